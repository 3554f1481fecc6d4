// tsc copies no non-TypeScript files: bring the Lua scripts (and any other runtime assets under
// src/) next to the compiled JavaScript that loads them.
const fs = require('node:fs');
const path = require('node:path');

const ASSET = /\.(lua|sql)$/;
function copy(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const from = path.join(dir, entry.name);
    if (entry.isDirectory()) copy(from);
    else if (ASSET.test(entry.name)) {
      const to = path.join('dist', from);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from, to);
    }
  }
}
copy('src');
