// The SQLite checkpointer (src/store-sqlite.c): a child process of the
// daemon copies the write-ahead log back into the database file every
// second, so that the daemon's loop never waits for a checkpoint's writes
// and fsyncs. If it dies, the daemon says so, serves on and checkpoints on
// its loop again; it goes when the daemon goes, however the daemon goes.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { sqliteOnly } from './lib/pg.mjs';
import { MODEL, startRelay, waitUsage } from './lib/relay.mjs';
import { sqliteModule } from './lib/tokens.mjs';
import { makeTempDir, removeDir, waitFor } from './lib/util.mjs';

const ONLY = sqliteOnly('the checkpointer is SQLite\'s; PostgreSQL checkpoints in its own server');
const enc = encodeURIComponent;

// A process that has exited (gone, or a zombie not yet reaped by init).
function gone(pid) {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0] === 'Z';
  } catch {
    return true;
  }
}

function children(pid) {
  let text = '';
  try { text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8'); } catch { /* none */ }
  return text.trim().split(/\s+/).filter(Boolean).map(Number).filter((c) => !gone(c));
}

function comm(pid) {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return null; }	// gone meanwhile
}

function checkpointers(d) {
  return children(d.pid).filter((c) => comm(c) === 'bsp-checkpoint');
}

// The checkpointer, once it has named itself (at once, unless the machine is busy).
const checkpointerOf = (d) => waitFor(() => checkpointers(d)[0], { timeoutMs: 5000, message: 'no bsp-checkpoint child' });

// The usage rows in the database file alone, without its log: a copy of
// the file is opened where no -wal file is next to it.
function rowsInFile(dir) {
  const tmp = makeTempDir('bsp-ckpt-');
  try {
    copyFileSync(join(dir, 'state', 'proxy.db'), join(tmp, 'copy.db'));
    const db = new (sqliteModule().DatabaseSync)(join(tmp, 'copy.db'));
    try {
      return db.prepare('SELECT count(*) AS n FROM usage').get().n;
    } finally {
      db.close();
    }
  } catch {
    return 0;		// copied mid-write: look again
  } finally {
    removeDir(tmp);
  }
}

async function calls(t, token, n) {
  for (let i = 0; i < n; i++) {
    const r = await t.post(`/model/${enc(MODEL)}/invoke`, { token });
    assert.equal(r.status, 200, r.text());
  }
}

test('the checkpointer: the rows reach the database file itself within seconds, not at 1000 pages of log', ONLY, async () => {
  const t = await startRelay();
  try {
    const pid = await checkpointerOf(t.d);
    assert.deepEqual(checkpointers(t.d), [pid], 'one checkpointer');
    const token = await t.token('ann@example.com');
    await calls(t, token, 40);
    await waitUsage(t.d.dir, 40);
    // 40 rows are a few pages of log, far below SQLite's own 1000-page
    // threshold: only the checkpointer puts them in the file this soon.
    await waitFor(() => rowsInFile(t.d.dir) >= 40, {
      timeoutMs: 10000, intervalMs: 200, message: 'the usage rows are still only in the -wal file',
    });
    assert.deepEqual(checkpointers(t.d), [pid], 'the same checkpointer');
  } finally {
    await t.stop();
  }
});

test('the checkpointer killed: the daemon logs it, reaps it and serves on; stopped, it leaves no log file and no process', ONLY, async () => {
  const t = await startRelay();
  let stopped = false;
  try {
    const pid = await checkpointerOf(t.d);
    const mark = t.d.logMark();
    process.kill(pid, 'SIGKILL');
    const e = await t.d.waitForLog((l) => /checkpointer \(pid \d+\) killed by signal 9/.test(l.msg ?? ''), 5000, { from: mark });
    assert.equal(e.level, 'warn');
    await waitFor(() => !existsSync(`/proc/${pid}`), { timeoutMs: 5000, message: 'the checkpointer was not reaped' });
    assert.deepEqual(checkpointers(t.d), []);
    const token = await t.token('bob@example.com');
    await calls(t, token, 5);
    await waitUsage(t.d.dir, 5);
    assert.equal((await t.d.request('/health')).status, 200);
    stopped = true;
    await t.d.stop({ keepDir: true });
    assert.ok(!existsSync(join(t.d.dir, 'state', 'proxy.db-wal')), 'the last connection closed cleanly');
  } finally {
    if (!stopped) await t.stop();
    else {
      await t.fake.close();
      removeDir(t.d.dir);
    }
  }
});

test('the checkpointer goes with the daemon: on SIGTERM, and on its own when the daemon is killed', ONLY, async () => {
  const t1 = await startRelay();
  const p1 = await checkpointerOf(t1.d);
  await t1.stop();
  assert.ok(gone(p1), 'stopped with the daemon');

  const t2 = await startRelay();
  let killed = false;
  try {
    const p2 = await checkpointerOf(t2.d);
    process.kill(t2.d.pid, 'SIGKILL');	// the daemon alone, not its group
    killed = true;
    await t2.d.waitForExit();
    await waitFor(() => gone(p2), { timeoutMs: 5000, message: 'the checkpointer outlived its daemon' });
  } finally {
    if (!killed) await t2.stop();
    else {
      await t2.fake.close();
      removeDir(t2.d.dir);
    }
  }
});
