// The real Claude Code binary (npm @anthropic-ai/claude-code, pinned in
// package.json) made to sign in to a gateway: its managed settings, its
// terminal in tmux, its commands.
//
// Claude Code 2.1.332 reads its managed settings on Linux from
// /etc/claude-code/managed-settings.json only: the binary knows the variable
// CLAUDE_CODE_MANAGED_SETTINGS_PATH, but this release never reads it (its
// override of the folder returns nothing). So each run happens in a user and
// mount namespace of its own (unshare -Urm) where an overlay puts the test's
// claude-code/managed-settings.json over /etc, for that process alone. Where
// the machine allows no user namespace, the run falls back to what the binary
// documents for a machine without managed settings: forceLoginMethod and
// forceLoginGatewayUrl in the user's own ~/.claude/settings.json (the login
// screen then says the URL is the developer's, not the organization's); the
// sandbox's mode says which.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { integrationDir, sleep } from './util.mjs';

export const CLAUDE = join(integrationDir, 'node_modules', '@anthropic-ai', 'claude-code', 'bin', 'claude.exe');

const q = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;

/** Can this machine overlay /etc in a user and mount namespace? */
function overlayWorks(ovl) {
  try {
    const out = execFileSync('unshare', ['-Urm', 'sh', '-c',
      'mount -t overlay overlay -o lowerdir="$1":/etc /etc && cat /etc/claude-code/managed-settings.json', 'sh', ovl],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 });
    return out.includes('forceLoginGatewayUrl');
  } catch {
    return false;
  }
}

/**
 * A sandbox for Claude Code signing in to the gateway at url: a HOME (onboarding
 * done, the work directory trusted), the managed settings, a BROWSER that
 * writes the URL it is given to a file, and a tmux server of its own.
 */
export function claudeSandbox(dir, url) {
  const home = join(dir, 'home');
  const work = join(dir, 'work');
  const ovl = join(dir, 'etc');
  const settings = { forceLoginMethod: 'gateway', forceLoginGatewayUrl: url, parentSettingsBehavior: 'merge' };
  mkdirSync(join(home, '.claude'), { recursive: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(join(ovl, 'claude-code'), { recursive: true });
  writeFileSync(join(ovl, 'claude-code', 'managed-settings.json'), JSON.stringify(settings));
  writeFileSync(join(home, '.claude.json'), JSON.stringify({
    hasCompletedOnboarding: true, theme: 'dark', projects: { [work]: { hasTrustDialogAccepted: true } },
  }));
  const mode = overlayWorks(ovl) ? 'managed' : 'user';
  if (mode === 'user') writeFileSync(join(home, '.claude', 'settings.json'), JSON.stringify(settings));
  const browserLog = join(dir, 'browser.log');
  writeFileSync(join(dir, 'browser.sh'), `#!/bin/sh\nprintf '%s\\n' "$1" >> ${q(browserLog)}\n`, { mode: 0o755 });
  const env = {
    PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8', TERM: 'xterm-256color', BROWSER: join(dir, 'browser.sh'),
    // Offline: no update checks, error reports or telemetry of Anthropic's.
    DISABLE_AUTOUPDATER: '1', DISABLE_ERROR_REPORTING: '1', DISABLE_TELEMETRY: '1', DISABLE_BUG_COMMAND: '1',
  };
  const sock = join(dir, 'tmux.sock');

  /** The command line that runs claude with args in the sandbox. */
  function argv(args) {
    const inner = ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), CLAUDE, ...args];
    if (mode === 'user') return ['sh', '-c', 'cd "$1" && shift && exec "$@"', 'sh', work, ...inner];
    return ['unshare', '-Urm', 'sh', '-c',
      'mount -t overlay overlay -o lowerdir="$1":/etc /etc && cd "$2" && shift 2 && exec "$@"', 'sh', ovl, work, ...inner];
  }

  const tmux = (...a) => execFileSync('tmux', ['-S', sock, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  return {
    mode, home, work, browserLog,
    /** Run claude with args to completion: {code, stdout, stderr}. */
    run(args, timeoutMs = 120000) {
      return new Promise((resolve, reject) => {
        const [cmd, ...rest] = argv(args);
        const p = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => { stdout += d; });
        p.stderr.on('data', (d) => { stderr += d; });
        const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
        p.on('error', reject);
        p.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
      });
    },
    /** Start claude with args in a terminal (tmux, 200x50). */
    start(args = []) {
      tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'cc', '-x', '200', '-y', '50', argv(args).map(q).join(' '));
    },
    screen() {
      try { return tmux('capture-pane', '-p', '-J', '-t', 'cc'); } catch { return ''; }
    },
    keys(...k) { tmux('send-keys', '-t', 'cc', ...k); },
    /** Wait until the screen matches re; its match. */
    async waitScreen(re, timeoutMs = 30000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const s = this.screen();
        const m = re.exec(s);
        if (m) return m;
        if (Date.now() > end) throw new Error(`the terminal never showed ${re}; it shows:\n${s}`);
        await sleep(200);
      }
    },
    /** Stop the tmux server (and claude in it). */
    stop() {
      try { tmux('kill-server'); } catch { /* not running */ }
    },
  };
}
