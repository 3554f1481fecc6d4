// The registry this project is built against serves only this platform's native packages, so npm
// leaves other platforms' optional binaries (@swc/core-darwin-arm64, …) out of package-lock.json, and
// `npm ci` then refuses the lock as "out of sync". This adds a stub entry (version, os, cpu, optional)
// for each such package: npm ci skips them by platform without fetching anything.
// Run after any `npm install` that changes the lock: `node scripts/lock-platform-stubs.js`.
const fs = require('node:fs');

const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8'));
const OS = ['darwin', 'win32', 'linux', 'android', 'freebsd', 'openharmony', 'sunos', 'aix', 'netbsd', 'openbsd'];
const CPU = [['arm64', 'arm64'], ['aarch64', 'arm64'], ['x64', 'x64'], ['ia32', 'ia32'], ['ppc64', 'ppc64'], ['s390x', 's390x'],
  ['riscv64', 'riscv64'], ['loong64', 'loong64'], ['arm-', 'arm'], ['armv7', 'arm'], ['wasm32', 'wasm32']];
let added = 0;
for (const [location, entry] of Object.entries(lock.packages)) {
  for (const [name, spec] of Object.entries(entry.optionalDependencies ?? {})) {
    const nested = `${location ? `${location}/` : ''}node_modules/${name}`;
    if (lock.packages[nested] || lock.packages[`node_modules/${name}`]) continue;
    const os = OS.find((o) => name.includes(`-${o}`));
    const cpu = CPU.find(([needle]) => name.includes(`-${needle}`) || name.endsWith(`-${needle.replace(/-$/, '')}`));
    if (!os || !cpu) continue;
    lock.packages[`node_modules/${name}`] = { version: String(spec).replace(/^[\^~=]/, ''), optional: true, os: [os], cpu: [cpu[1]] };
    added++;
  }
}
fs.writeFileSync('package-lock.json', `${JSON.stringify(lock, null, 2)}\n`);
process.stdout.write(`added ${added} platform stub(s) to package-lock.json\n`);
