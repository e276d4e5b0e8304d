// A full disk: writes fail, the client gets a clean 503, nothing changes,
// the daemon keeps serving and exits cleanly. The "disk" is a file size
// limit (RLIMIT_FSIZE) on the daemon, so no root or mount is needed.
import assert from 'node:assert/strict';
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bspBin, startDaemon } from './lib/daemon.mjs';
import { sqliteOnly } from './lib/pg.mjs';
import { seedSession } from './lib/tokens.mjs';
import { makeTempDir, removeDir } from './lib/util.mjs';

const ISS = 'https://disk.test';

const refresh = (d, token) => d.request('/auth/refresh', {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: token }),
});

// The daemon's own file-size limit only reaches a database it writes itself.
test('a full disk: refreshes fail with 503 and consume nothing; the daemon keeps serving',
  sqliteOnly('the full disk is the daemon\'s RLIMIT_FSIZE on its database file; PostgreSQL writes in its own server'), async () => {
  const tmp = makeTempDir('bsp-disk-');
  try {
    const config = { jwt: { issuer: ISS } };
    const d1 = await startDaemon({ config, dir: join(tmp, 'run') });
    const sessions = Array.from({ length: 40 }, () => seedSession(d1.dir));
    await d1.stop({ keepDir: true });
    const dbSize = statSync(join(d1.dir, 'state', 'proxy.db')).size;
    assert.ok(dbSize > 48 * 1024, `database is ${dbSize} bytes`);

    // Writes past 48 KiB fail with EFBIG (the database itself is larger,
    // so it can be read but not grown, and its log soon fills).
    const wrapper = join(tmp, 'limited');
    writeFileSync(wrapper, `#!/bin/bash\nulimit -f 48\nexec ${JSON.stringify(bspBin())} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const d2 = await startDaemon({ config, dir: d1.dir, bin: wrapper });
    let failed = null;
    let done = 0;
    for (const s of sessions) {
      const r = await refresh(d2, s.refresh);
      if (r.status !== 200) {
        failed = { s, r };
        break;
      }
      done++;
    }
    assert.ok(failed, `every refresh succeeded (${done}); the limit was never reached`);
    assert.equal(failed.r.status, 503, failed.r.text());
    assert.equal(failed.r.json().error, 'temporarily_unavailable');
    assert.equal((await d2.request('/health')).status, 200, 'still serving');
    // Refusing again is stable, and reads still work.
    assert.equal((await refresh(d2, failed.s.refresh)).status, 503);
    assert.equal((await d2.request('/.well-known/jwks.json')).status, 200);
    await d2.stop({ keepDir: true });

    // With room again, the token that failed was not consumed.
    const d3 = await startDaemon({ config, dir: d1.dir });
    try {
      const r = await refresh(d3, failed.s.refresh);
      assert.equal(r.status, 200, `the refresh that hit the full disk still works: ${r.text()}`);
    } finally {
      await d3.stop();
    }
  } finally {
    if (process.env.BSP_KEEP_TMP) console.log(`# kept ${tmp}`);
    else removeDir(tmp);
  }
});
