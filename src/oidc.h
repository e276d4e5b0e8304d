/*
 * oidc.h: identity providers' discovery documents and JWK sets, fetched on
 * the loop, cached, refreshed, and re-fetched on an unknown key id.
 */

#ifndef OIDC_H
#define OIDC_H

#include <stddef.h>

#include "crypto.h"

struct oidc_issuer;
struct strlist;

/* oidc_issuer_get() flags */
#define OIDC_DISCOVERY		0x01	/* endpoints from discovery */
#define OIDC_TENANT_ALIAS	0x02	/* Microsoft: tenant by domain */

struct oidc_issuer *oidc_issuer_get(const char *, const char *,
		     const struct strlist *, int);
void		 oidc_issuer_put(struct oidc_issuer *);
int		 oidc_ready(const struct oidc_issuer *);
void		 oidc_kick(struct oidc_issuer *);
int		 oidc_has_keys(const struct oidc_issuer *);
int		 oidc_failing(const struct oidc_issuer *);
int		 oidc_multi_tenant(const struct oidc_issuer *);
int		 oidc_flag(const struct oidc_issuer *, const char *);
const char	*oidc_problem_text(const struct oidc_issuer *);
const char	*oidc_issuer_name(const struct oidc_issuer *);
const char	*oidc_endpoint(const struct oidc_issuer *, const char *);
int		 oidc_supports(const struct oidc_issuer *, const char *,
		     const char *);
int		 oidc_expected_issuer(const struct oidc_issuer *, const char *,
		     char *, size_t);
int		 oidc_find_key(struct oidc_issuer *, const char *,
		     enum crypto_alg, const struct crypto_key **,
		     void (*)(void *), void *);
void		 oidc_cancel_wait(struct oidc_issuer *, void *);

#endif /* OIDC_H */
