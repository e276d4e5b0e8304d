/*
 * principal.c: who is behind a request, whatever credential said so (one
 * of our access tokens, a legacy or an external issuer's token, an API
 * key): reference counted, with its scopes, and what is held against it
 * right now.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "tokens.h"

struct principal *
principal_new(enum principal_kind kind)
{
	struct principal	*p;

	p = xcalloc(1, sizeof *p);
	p->refcnt = 1;
	p->kind = kind;
	return (p);
}

struct principal *
principal_ref(struct principal *p)
{
	p->refcnt++;
	return (p);
}

void
principal_unref(struct principal *p)
{
	if (p == NULL || --p->refcnt > 0)
		return;
	free(p->sub);
	free(p->provider);
	free(p->email);
	free(p->name);
	free(p->sid);
	free(p->key_id);
	free(p->key_name);
	free(p->tenant);
	strlist_free(&p->groups);
	strlist_free(&p->scopes);
	strlist_free(&p->key_models);
	free(p);
}

int
principal_has_scope(const struct principal *p, const char *scope)
{
	/* A key made before scopes (none listed) may do what keys did. */
	if (p->kind == PRINCIPAL_API_KEY && p->scopes.n == 0)
		return (strcmp(scope, SCOPE_INVOKE) == 0);
	if (p->kind == PRINCIPAL_EXTERNAL || p->kind == PRINCIPAL_LEGACY)
		return (strcmp(scope, SCOPE_INVOKE) == 0);
	return (strlist_contains(&p->scopes, scope));
}

/*
 * Is anything held against this principal right now? Checked on every
 * request, cached or not. Returns a reason safe to show, or NULL.
 */
const char *
principal_revoked(const struct principal *p)
{
	const struct user_state	*us;

	us = user_state(p->sub);
	if (us != NULL && us->disabled)
		return ("user is disabled");
	if (us != NULL && us->denied)
		return ("the access policy no longer admits this user");
	if (p->sid != NULL && tokens_family_revoked(p->sid))
		return ("session has been revoked");
	/*
	 * Our tokens belong to a session, which "user logout" revokes; the
	 * time cut-off is for tokens without one (legacy, external), so a
	 * login in the same second as a logout is not caught by it.
	 */
	if (us != NULL && p->sid == NULL && p->kind != PRINCIPAL_API_KEY &&
	    us->revoked_before != 0 && p->iat <= us->revoked_before)
		return ("token has been revoked");
	if (p->exp != 0 && p->exp + TOKEN_LEEWAY <= now_wall())
		return ("token expired");
	return (NULL);
}
