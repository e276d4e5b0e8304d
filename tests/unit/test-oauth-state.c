/*
 * test-oauth-state.c: sealed sign-in states (oauth-state.c) and the
 * per-address allowance of sign-in starts.
 *
 * States: a sealed state opens to what was sealed; every altered, cut,
 * lengthened or foreign text is refused; a state is expired at its expiry
 * and refused outright when it claims to live longer than any we issue;
 * plaintexts sealed under the right key but not in the documented layout
 * (built here from the layout in oauth-state.c's header comment, not with
 * its code) are refused, and one that follows it opens. Starts: a burst,
 * then refusals with a Retry-After, refilled over time, per address; the
 * table stays bounded and a new address always gets its allowance.
 */

#include <sys/stat.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "crypto.h"
#include "oauth-state.h"
#include "tap.h"

#define T0	1700000000

static char	kekdir[] = "/tmp/test-oauth-state.XXXXXX";

static void
load_kek(const char *name)
{
	struct crypto_err	err;
	char			path[256];

	crypto_kek_unload();
	snprintf(path, sizeof path, "%s/%s", kekdir, name);
	if (crypto_kek_load(path, &err) == -1) {
		printf("Bail out! KEK %s: %s\n", path, err.msg);
		exit(1);
	}
}

static void
sample(struct oauth_state *st, int flow)
{
	memset(st, 0, sizeof *st);
	st->flow = (uint8_t)flow;
	st->flags = OAUTH_STATE_PKCE;
	st->expires = T0 + OAUTH_STATE_TTL;
	crypto_random(st->id, sizeof st->id);
	crypto_random(st->nonce, sizeof st->nonce);
	crypto_random(st->verifier, sizeof st->verifier);
	crypto_sha256("http://127.0.0.1:8765/cb", 24, st->redirect_hash);
	if (flow == OAUTH_FLOW_API) {
		st->flags |= OAUTH_STATE_CLIENT_PKCE;
		crypto_random(st->challenge, sizeof st->challenge);
	}
	bsp_strlcpy(st->provider, "corp-idp_2", sizeof st->provider);
}

/* The documented layout, by hand; returns its length. */
static size_t
layout(uint8_t *p, int version, int flow, int flags, int64_t expires,
    int challenge, const char *provider, size_t plen)
{
	size_t	n = 0;
	int	i;

	p[n++] = (uint8_t)version;
	p[n++] = (uint8_t)flow;
	p[n++] = (uint8_t)flags;
	for (i = 7; i >= 0; i--)
		p[n++] = (uint8_t)((uint64_t)expires >> (i * 8));
	memset(p + n, 0x11, 3 * 32);		/* id, nonce, verifier */
	n += 3 * 32;
	memset(p + n, 0x22, 32);		/* redirect hash */
	n += 32;
	memset(p + n, challenge, 32);
	n += 32;
	p[n++] = (uint8_t)plen;
	memcpy(p + n, provider, strlen(provider));
	n += strlen(provider);
	return (n);
}

/* Seal a raw plaintext under the states' key and open it at T0. */
static int
open_raw(const uint8_t *pt, size_t len, struct oauth_state *st)
{
	uint8_t	*sealed;
	size_t	 slen;
	char	*text;
	int	 rc;

	if (crypto_seal_for(OAUTH_STATE_PURPOSE, pt, len, &sealed, &slen) ==
	    -1)
		return (99);
	text = crypto_b64url_encode_alloc(sealed, slen);
	rc = oauth_state_open(text, strlen(text), T0, st);
	free(text);
	free(sealed);
	return (rc);
}

static void
test_roundtrip(void)
{
	struct oauth_state	 st, got;
	char			*text, id[OAUTH_STATE_ID_TEXT];
	uint8_t			 k1[CRYPTO_HASH_LEN], k2[CRYPTO_HASH_LEN];
	int			 flow;

	for (flow = OAUTH_FLOW_BROWSER; flow <= OAUTH_FLOW_API; flow++) {
		sample(&st, flow);
		text = oauth_state_seal(&st);
		ok(text != NULL && strlen(text) <= OAUTH_STATE_TEXT_MAX,
		    "flow %d: sealed, %zu characters", flow,
		    text != NULL ? strlen(text) : 0);
		is_int(oauth_state_open(text, strlen(text), T0, &got),
		    OAUTH_STATE_OK, "flow %d: opens", flow);
		ok(memcmp(&st, &got, sizeof st) == 0,
		    "flow %d: to exactly what was sealed", flow);
		is_int(oauth_state_open(text, strlen(text), T0 +
		    OAUTH_STATE_TTL - 1, &got), OAUTH_STATE_OK,
		    "flow %d: open a second before it expires", flow);
		is_int(oauth_state_open(text, strlen(text), T0 +
		    OAUTH_STATE_TTL, &got), OAUTH_STATE_EXPIRED,
		    "flow %d: expired at its expiry", flow);
		ok(got.provider[0] == '\0' && got.flow == 0,
		    "flow %d: an expired state gives nothing away", flow);
		is_int(oauth_state_open(text, strlen(text), T0 - 61, &got),
		    OAUTH_STATE_INVALID, "flow %d: one that would live longer "
		    "than any we issue is refused", flow);
		free(text);
	}
	sample(&st, OAUTH_FLOW_BROWSER);
	oauth_state_id_text(&st, id);
	oauth_state_key(&st, k1);
	crypto_hash_token(id, k2);
	ok(strlen(id) == 43 && memcmp(k1, k2, sizeof k1) == 0,
	    "its key is the hash of its id's text");
	st.id[0] ^= 1;
	oauth_state_key(&st, k2);
	ok(memcmp(k1, k2, sizeof k1) != 0, "another id, another key");

	bsp_strlcpy(st.provider, "", sizeof st.provider);
	ok(oauth_state_seal(&st) == NULL, "no provider: not sealed");
	bsp_strlcpy(st.provider, "Corp", sizeof st.provider);
	ok(oauth_state_seal(&st) == NULL, "a provider name in capitals: "
	    "not sealed");
}

static void
test_altered(void)
{
	struct oauth_state	 st, got;
	char			*text, *t2, *big;
	size_t			 i, len, bad = 0;
	uint8_t			*box;
	size_t			 boxlen;

	sample(&st, OAUTH_FLOW_API);
	text = oauth_state_seal(&st);
	len = strlen(text);
	t2 = xstrdup(text);
	for (i = 0; i < len; i++) {
		t2[i] = text[i] == 'A' ? 'B' : 'A';
		if (oauth_state_open(t2, len, T0, &got) != OAUTH_STATE_INVALID)
			bad++;
		t2[i] = text[i];
	}
	is_int(bad, 0, "each of the %zu characters altered: refused", len);
	is_int(oauth_state_open(text, len - 1, T0, &got), OAUTH_STATE_INVALID,
	    "cut by one character: refused");
	is_int(oauth_state_open(text, len - 4, T0, &got), OAUTH_STATE_INVALID,
	    "cut by three bytes: refused");
	big = xmalloc(len + 5);
	memcpy(big, text, len);
	memcpy(big + len, "AAAA", 5);
	is_int(oauth_state_open(big, len + 4, T0, &got), OAUTH_STATE_INVALID,
	    "three bytes longer: refused");
	free(big);
	is_int(oauth_state_open("", 0, T0, &got), OAUTH_STATE_INVALID,
	    "empty: refused");
	is_int(oauth_state_open("not base64!", 11, T0, &got),
	    OAUTH_STATE_INVALID, "not base64url: refused");
	big = xmalloc(OAUTH_STATE_TEXT_MAX + 5);
	memset(big, 'A', OAUTH_STATE_TEXT_MAX + 4);
	big[OAUTH_STATE_TEXT_MAX + 4] = '\0';
	is_int(oauth_state_open(big, OAUTH_STATE_TEXT_MAX + 4, T0, &got),
	    OAUTH_STATE_INVALID, "longer than any state: refused");
	free(big);

	/* The same plaintext under the KEK itself, or another KEK. */
	load_kek("kek");
	sample(&st, OAUTH_FLOW_BROWSER);
	free(text);
	text = oauth_state_seal(&st);
	load_kek("other");
	is_int(oauth_state_open(text, strlen(text), T0, &got),
	    OAUTH_STATE_INVALID, "sealed under another KEK: refused");
	load_kek("kek");
	is_int(oauth_state_open(text, strlen(text), T0, &got), OAUTH_STATE_OK,
	    "and opens again under its own");
	ok(crypto_seal("x", 1, &box, &boxlen) == 0, "a blob sealed for "
	    "something else");
	free(t2);
	t2 = crypto_b64url_encode_alloc(box, boxlen);
	is_int(oauth_state_open(t2, strlen(t2), T0, &got),
	    OAUTH_STATE_INVALID, "is not a state");
	free(box);
	free(t2);
	free(text);
}

static void
test_layout(void)
{
	struct oauth_state	 got;
	uint8_t			 pt[512];
	size_t			 n;
	int64_t			 e = T0 + 300;

	n = layout(pt, 1, OAUTH_FLOW_API, 3, e, 0x33, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_OK,
	    "the documented layout opens");
	ok(got.flow == OAUTH_FLOW_API && got.flags == 3 && got.expires == e &&
	    got.id[0] == 0x11 && got.verifier[31] == 0x11 &&
	    got.redirect_hash[0] == 0x22 && got.challenge[31] == 0x33 &&
	    strcmp(got.provider, "op") == 0, "to the documented fields");
	n = layout(pt, 1, OAUTH_FLOW_BROWSER, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_OK, "a browser state opens");

	n = layout(pt, 2, OAUTH_FLOW_BROWSER, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "version 2: refused");
	n = layout(pt, 0, OAUTH_FLOW_BROWSER, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "version 0: refused");
	n = layout(pt, 1, OAUTH_FLOW_DEVICE, 1, e, 0x44, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_OK, "a device state opens");
	ok(got.flow == OAUTH_FLOW_DEVICE && got.challenge[0] == 0x44,
	    "with its device authorization's key");
	n = layout(pt, 1, OAUTH_FLOW_DEVICE, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "a device state without a key: refused");
	n = layout(pt, 1, OAUTH_FLOW_DEVICE, 3, e, 0x44, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "a client challenge in the device flow: refused");
	n = layout(pt, 1, 4, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID, "flow 4: refused");
	n = layout(pt, 1, 0, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID, "flow 0: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 4, e, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "an unknown flag: refused");
	n = layout(pt, 1, OAUTH_FLOW_BROWSER, 2, e, 0x33, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "a client challenge in the browser flow: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0x33, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "challenge bytes without the flag: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0, "op", 3);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "provider shorter than its length: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0, "op", 1);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "provider longer than its length: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0, "", 0);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "no provider: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0, "O/p", 3);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "a provider name we never use: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0,
	    "abcdefghijabcdefghijabcdefghijabc", 33);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "a 33-character provider: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, e, 0, "op", 2);
	is_int(open_raw(pt, n - 3, &got), OAUTH_STATE_INVALID,
	    "cut plaintext: refused");
	is_int(open_raw(pt, 20, &got), OAUTH_STATE_INVALID,
	    "a plaintext shorter than the head: refused");
	is_int(open_raw(pt, 0, &got), OAUTH_STATE_INVALID,
	    "an empty plaintext: refused");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, -1, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_EXPIRED,
	    "an expiry before 1970: expired");
	n = layout(pt, 1, OAUTH_FLOW_API, 1, INT64_MAX, 0, "op", 2);
	is_int(open_raw(pt, n, &got), OAUTH_STATE_INVALID,
	    "an expiry far in the future: refused");
}

static void
test_starts(void)
{
	char	addr[64];
	long	retry;
	size_t	i;
	int	bad;

	oauth_starts_clear();
	for (i = 0; i < 3; i++)
		is_int(oauth_starts_take("192.0.2.1", 100.0, 3, &retry), 0,
		    "start %zu of a burst of 3", i + 1);
	is_int(oauth_starts_take("192.0.2.1", 100.0, 3, &retry), -1,
	    "the fourth is refused");
	ok(retry >= 1 && retry <= 201, "with a Retry-After of %ld s "
	    "(one start per 200 s)", retry);
	is_int(oauth_starts_take("192.0.2.2", 100.0, 3, &retry), 0,
	    "another address is not affected");
	is_int(oauth_starts_take("192.0.2.1", 150.0, 3, &retry), -1,
	    "50 s later, still refused");
	is_int(oauth_starts_take("192.0.2.1", 301.0, 3, &retry), 0,
	    "after 200 s, one more");
	is_int(oauth_starts_take("192.0.2.1", 301.0, 3, &retry), -1,
	    "and only one");
	is_int(oauth_starts_take("192.0.2.3", 301.0, 0, &retry), 0,
	    "an allowance below one is one");
	is_int(oauth_starts_take("192.0.2.3", 301.0, 0, &retry), -1,
	    "exactly one");

	/* Many more addresses than the table holds. */
	bad = 0;
	for (i = 0; i < OAUTH_STARTS_MAX + 100; i++) {
		snprintf(addr, sizeof addr, "2001:db8:%zx:%zx::/64", i >> 16,
		    i & 0xffff);
		if (oauth_starts_take(addr, 400.0, 1, &retry) != 0)
			bad++;
	}
	is_int(bad, 0, "%d addresses: each gets its start",
	    OAUTH_STARTS_MAX + 100);
	ok(oauth_starts_count() <= OAUTH_STARTS_MAX, "the table holds at "
	    "most %d (%zu)", OAUTH_STARTS_MAX, oauth_starts_count());
	is_int(oauth_starts_take("198.51.100.9", 400.0, 1, &retry), 0,
	    "a new address still starts");
	is_int(oauth_starts_take("2001:db8:0:ffff::/64", 400.0, 1, &retry), -1,
	    "one that is remembered is still limited");
	is_int(oauth_starts_take("203.0.113.1", 400.0 + OAUTH_STARTS_WINDOW,
	    1, &retry), 0, "a window later");
	is_int(oauth_starts_count(), 1, "everyone else's allowance is full "
	    "again and forgotten");
	oauth_starts_clear();
	is_int(oauth_starts_count(), 0, "cleared");
}

int
main(void)
{
	char	path[256];

	if (crypto_init() == -1 || mkdtemp(kekdir) == NULL) {
		printf("Bail out! set-up\n");
		return (1);
	}
	load_kek("kek");
	test_roundtrip();
	test_altered();
	test_layout();
	test_starts();
	crypto_kek_unload();
	snprintf(path, sizeof path, "%s/kek", kekdir);
	unlink(path);
	snprintf(path, sizeof path, "%s/other", kekdir);
	unlink(path);
	rmdir(kekdir);
	return (tap_done());
}
