# syntax=docker/dockerfile:1
# Ditto Gateway image (docs/deployment.md). Two stages: `build` installs and compiles exactly like CI
# (.ci/run), `runtime` keeps production dependencies and the compiled server only.
#   docker build -t ditto-gateway .
#   docker run -p 8080:8080 -v ditto-data:/data ditto-gateway
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
# better-sqlite3 compiles its native addon when no prebuilt binary can be downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# The npm CI uses. Node 20 ships npm 10, which ignores package.json's `allowScripts` and would run the
# install scripts it denies (@scarf/scarf's telemetry, @parcel/watcher's build).
ARG NPM_VERSION=11.19.1
RUN npm install -g npm@${NPM_VERSION}
# node-gyp builds against the image's own Node headers instead of downloading them (the CI machine's
# npm config points nodedir at its local Node the same way).
ENV npm_config_nodedir=/usr/local
WORKDIR /app

# Dependencies first: this layer is reused until package.json or the lock file changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
# nest build (nest-cli.json): tsc -> dist/src/**.js (rootDir "."), with src/**/*.lua copied beside it.
RUN npm run build
RUN npm prune --omit=dev --no-audit --no-fund

# ---------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    SQLITE_PATH=/data/ditto.sqlite \
    STATE_FILE=/data/gateway.state.json
WORKDIR /app
# The code stays root-owned (read-only for the server); /data is the only place it writes (SQLite, the
# state file). Created and chowned before VOLUME, so a new named volume starts out owned by `node`.
# ./data (the defaults' directory, e.g. from an env file copied from .env.example) is the same place.
RUN mkdir -p /data && chown node:node /data && ln -s /data /app/data
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
USER node
VOLUME /data
# The server listens on PORT (default 8080) on HOST (default 0.0.0.0).
EXPOSE 8080
# Liveness only (/health does no I/O). Slim images have no curl: Node's own fetch does it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM starts the graceful shutdown (/ready 503, serve on for SHUTDOWN_GRACE_MS, drain, flush, exit 0).
# Node is PID 1 and handles SIGTERM/SIGINT itself (Nest shutdown hooks), so no init process is needed.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
