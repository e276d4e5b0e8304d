// Test PKI made with the openssl CLI (Debian package "openssl").
// All functions are synchronous and return PEM *file paths*; keys are mode 0600.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomHex } from './util.mjs';

function openssl(args, cwd) {
  try {
    return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

const keyArgs = (keyType) => (keyType === 'rsa'
  ? ['-newkey', 'rsa:2048']
  : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);

const safeName = (s) => s.replace(/[^A-Za-z0-9._-]/g, '_');

/**
 * Create a self-signed CA in `dir` (created if missing).
 * Returns {dir, cert, key, name}.
 */
export function makeCA(dir, { cn = 'bedrock-sso-proxy test CA', name = 'ca', days = 3650, keyType = 'ec' } = {}) {
  mkdirSync(dir, { recursive: true });
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  openssl([
    'req', '-x509', ...keyArgs(keyType), '-nodes', '-sha256', '-days', String(days),
    '-subj', `/O=bedrock-sso-proxy tests/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectKeyIdentifier=hash',
    '-keyout', key, '-out', cert,
  ]);
  chmodSync(key, 0o600);
  return { dir, cert, key, name };
}

/**
 * Issue a server (and client) certificate signed by `ca`.
 * `dns` and `ip` become subjectAltNames (the CN is not used for host checks).
 * Returns {cert, key, chain, ca: ca.cert, cn, dns, ip}; `chain` = leaf + CA.
 */
export function makeCert(ca, {
  cn = 'localhost', dns = ['localhost'], ip = ['127.0.0.1', '::1'], days = 825,
  name, keyType = 'ec', dir = ca.dir,
} = {}) {
  const base = join(dir, safeName(name ?? `${cn}-${randomHex(3)}`));
  const cert = `${base}.crt`;
  const key = `${base}.key`;
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  const san = [...dns.map((d) => `DNS:${d}`), ...ip.map((a) => `IP:${a}`)].join(',');
  writeFileSync(ext, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid,issuer',
    ...(san ? [`subjectAltName=${san}`] : []),
    '',
  ].join('\n'));
  openssl(['req', '-new', ...keyArgs(keyType), '-nodes', '-subj', `/CN=${cn}`, '-keyout', key, '-out', csr]);
  chmodSync(key, 0o600);
  openssl([
    'x509', '-req', '-sha256', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key,
    '-set_serial', `0x${randomHex(16)}`, '-days', String(days), '-extfile', ext, '-out', cert,
  ]);
  rmSync(csr, { force: true });
  rmSync(ext, { force: true });
  const chain = `${base}.chain.crt`;
  writeFileSync(chain, readFileSync(cert, 'utf8') + readFileSync(ca.cert, 'utf8'));
  return { cert, key, chain, ca: ca.cert, cn, dns, ip };
}

/** A certificate from `ca` valid only for a host name nobody connects to. */
export function makeWrongHostCert(ca, opts = {}) {
  return makeCert(ca, { cn: 'wrong.invalid', dns: ['wrong.invalid'], ip: [], name: 'wrong-host', ...opts });
}

/**
 * A certificate for localhost/127.0.0.1/::1 signed by a fresh, unrelated CA
 * (in `dir`/untrusted-ca): correct names, untrusted chain.
 */
export function makeUntrustedCert(dir, opts = {}) {
  const other = makeCA(join(dir, 'untrusted-ca'), { cn: 'unrelated test CA', name: 'untrusted-ca' });
  return { ...makeCert(other, { name: 'untrusted', ...opts }), untrustedCA: other };
}

/**
 * Everything a TLS test usually needs, under `dir`:
 * {ca, server (localhost,127.0.0.1,::1), wrongHost, untrusted}.
 */
export function makeTestPKI(dir) {
  const ca = makeCA(dir);
  return {
    ca,
    server: makeCert(ca, { name: 'server' }),
    wrongHost: makeWrongHostCert(ca),
    untrusted: makeUntrustedCert(dir),
  };
}

/** Read a PEM file (helper for node TLS options). */
export const readPem = (path) => readFileSync(path, 'utf8');
