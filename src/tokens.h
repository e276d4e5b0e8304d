/*
 * tokens.h: what the files of the tokens family share with each other
 * (tokens.c the module, tokens-keys.c, tokens-jwt.c, tokens-refresh.c,
 * tokens-revoked.c, and principal.c). Their public surface is in bsp.h.
 */

#ifndef TOKENS_H
#define TOKENS_H

#include "crypto.h"
#include "store.h"

/*
 * Clock skew allowed on exp, nbf and iat (SPEC: 60 s). A token is accepted
 * until exp + TOKEN_LEEWAY, so whatever is held against it (a revoked
 * family) is kept that long too: see tokens_revoked_horizon().
 */
#define TOKEN_LEEWAY	60

/* tokens.c */
char		*tokens_random_id(size_t);
void		 tokens_purge(time_t, store_end_cb, void *);

/* tokens-keys.c */
void		 tokens_keys_load(store_end_cb, void *);
void		 tokens_keys_on_fatal(void (*)(const char *));
const char	*tokens_keys_error(void);
int		 tokens_keys_restarts(void);
int		 tokens_keys_loaded(void);
void		 tokens_keys_sync(void);
int		 tokens_reload_pending(void);
void		 tokens_keys_purge(time_t, store_end_cb, void *);
void		 tokens_keys_free(void);
enum crypto_alg	 tokens_keys_legacy_alg(int);
const struct crypto_key *tokens_keys_signer(void);
const char	*tokens_keys_kms(void);
const struct crypto_key *tokens_keys_find(const char *, enum crypto_alg);
const struct crypto_key *tokens_keys_legacy(void);

/* tokens-revoked.c */
time_t		 tokens_revoked_horizon(time_t);
void		 tokens_revoked_add(const char *, time_t);
void		 tokens_revoked_load(store_end_cb, void *);
int		 tokens_revoked_loaded(void);
void		 tokens_revoked_expire(time_t);
void		 tokens_revoked_clear(void);

#endif /* TOKENS_H */
