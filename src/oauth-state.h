/*
 * oauth-state.h: unfinished sign-ins sealed for the client to carry, and
 * each client address's allowance of sign-in starts.
 */

#ifndef OAUTH_STATE_H
#define OAUTH_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "crypto.h"

#define OAUTH_STATE_VERSION	1	/* first byte of the plaintext */
#define OAUTH_STATE_PURPOSE	"bsp-login-state-v1"	/* its sealing key */
#define OAUTH_STATE_TTL		600	/* seconds to finish a sign-in */
#define OAUTH_STATE_SLACK	60	/* clocks of daemons sharing a KEK */
#define OAUTH_STATE_SECRET	32	/* id, nonce, verifier bytes */
#define OAUTH_STATE_PROVIDER_MAX 32
#define OAUTH_STATE_TEXT_MAX	512	/* base64url of a sealed state */
#define OAUTH_STATE_ID_TEXT	44	/* base64url of the id, with NUL */

/* oauth_state flows */
#define OAUTH_FLOW_BROWSER	1
#define OAUTH_FLOW_API		2
#define OAUTH_FLOW_DEVICE	3	/* the browser's, approving a device */

/* oauth_state flags */
#define OAUTH_STATE_PKCE	0x01	/* the IdP was sent our challenge */
#define OAUTH_STATE_CLIENT_PKCE	0x02	/* API: the client's challenge */

/*
 * One unfinished sign-in. The id names it for single use (the hash of its
 * base64url text keys the oauth_states row written when it is redeemed);
 * in the browser flow its text is also the state the IdP sends back.
 */
struct oauth_state {
	uint8_t		flow;
	uint8_t		flags;
	int64_t		expires;		/* Unix time */
	uint8_t		id[OAUTH_STATE_SECRET];
	uint8_t		nonce[OAUTH_STATE_SECRET];
	uint8_t		verifier[OAUTH_STATE_SECRET];
	uint8_t		redirect_hash[CRYPTO_HASH_LEN];	/* SHA-256 */
	/*
	 * API flow: the client's S256 challenge (OAUTH_STATE_CLIENT_PKCE);
	 * device flow: the key of the device authorization it approves.
	 */
	uint8_t		challenge[CRYPTO_HASH_LEN];
	char		provider[OAUTH_STATE_PROVIDER_MAX + 1];
};

/* oauth_state_open() results */
#define OAUTH_STATE_OK		0
#define OAUTH_STATE_INVALID	-1	/* not ours, altered, or malformed */
#define OAUTH_STATE_EXPIRED	-2

char	*oauth_state_seal(const struct oauth_state *);
int	 oauth_state_open(const char *, size_t, time_t, struct oauth_state *);
void	 oauth_state_id_text(const struct oauth_state *,
	     char [OAUTH_STATE_ID_TEXT]);
void	 oauth_state_key(const struct oauth_state *,
	     uint8_t [CRYPTO_HASH_LEN]);

#define OAUTH_STARTS_WINDOW	600.0	/* seconds to refill an allowance */
#define OAUTH_STARTS_MAX	65536	/* client addresses remembered */

int	 oauth_starts_take(const char *, double, int, long *);
size_t	 oauth_starts_count(void);
void	 oauth_starts_clear(void);

#endif /* OAUTH_STATE_H */
