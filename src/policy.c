/*
 * policy.c: what an authenticated principal may do: which models it may
 * call (models.rules, API key patterns) and how often (rate_limits).
 *
 * Model rules are read in order. A rule applies to a principal when it has
 * no selector at all, or when one of its groups, emails or domains matches.
 * The first applicable rule whose deny or allow list matches the model
 * decides (deny before allow within a rule); if none does, models.default
 * decides. An API key's own model patterns must match as well. Patterns
 * see the id as relay_id_decode() left it and ignore letter case, so
 * neither %XX nor "OPUS" for "opus" walks around a deny.
 *
 * Rate limits are per user and per API key. With one daemon (SQLite) they
 * are token buckets in memory: a bucket of requests_per_minute requests
 * refilling continuously, and one of tokens_per_minute tokens that is
 * charged when a call's usage is known and may go negative; a call is
 * refused while either bucket is empty. Daemons sharing a PostgreSQL
 * database count together instead (counters.c), in fixed one-minute
 * windows: a call is refused once the requests (or tokens) of the window,
 * the daemon's own and the others' as last read, reach the limit, until
 * the window ends.
 */

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "bsp.h"

#define BUCKET_IDLE	600	/* seconds before an idle bucket is dropped */
#define RL_WINDOW	60	/* the shared counters' window, seconds */

struct bucket {
	char		*key;
	double		 requests;	/* available */
	double		 tokens;	/* available; may be negative */
	double		 updated;	/* now_mono() */
	UT_hash_handle	 hh;
};

static struct bucket	*buckets;

static const char *
email_domain(const char *email);

/*
 * May this identity log in (or use an external token)? 1 yes; 0 no, with
 * *why safe to show. Any one admission rule is enough; an email admits
 * only when verified (access.require_verified_email). Multi-tenant
 * Microsoft logins must come from access.allowed_tenants whatever else.
 */
int
access_allowed(const struct config *c, const struct provider_config *pc,
    const struct identity *id, const char **why)
{
	const char	*dom;
	size_t		 i;
	int		 email_match = 0;

	if (pc != NULL && pc->multi_tenant && c->access_tenants.n != 0 &&
	    (id->tenant == NULL ||
	    !strlist_contains_nocase(&c->access_tenants, id->tenant))) {
		*why = "Your organization (Microsoft tenant) is not allowed to "
		    "use this proxy.";
		return (0);
	}
	if (c->access_any_user)
		return (1);
	for (i = 0; i < id->groups.n; i++) {
		if (strlist_contains(&c->access_groups, id->groups.v[i]))
			return (1);
	}
	if (pc != NULL && pc->kind == PROVIDER_GITHUB) {
		for (i = 0; i < id->orgs.n; i++) {
			if (strlist_contains_nocase(&c->access_github_orgs,
			    id->orgs.v[i]))
				return (1);
		}
	}
	/* A tenant admits only where tenants mean Entra tenants. */
	if (id->tenant != NULL && c->access_tenants.n != 0 &&
	    (pc == NULL || pc->kind == PROVIDER_MICROSOFT ||
	    pc->multi_tenant) &&
	    strlist_contains_nocase(&c->access_tenants, id->tenant))
		return (1);
	if (id->email != NULL) {
		dom = email_domain(id->email);
		email_match = strlist_contains_nocase(&c->access_emails,
		    id->email) || (dom != NULL &&
		    strlist_contains_nocase(&c->access_domains, dom));
		if (email_match && (id->email_verified ||
		    !c->access_require_verified))
			return (1);
	}
	if (email_match)
		*why = "Your email address is not verified with your identity "
		    "provider; verify it there and sign in again.";
	else
		*why = "Your account is not allowed to use this proxy.";
	return (0);
}

static const char *
email_domain(const char *email)
{
	const char	*at;

	if (email == NULL || (at = strrchr(email, '@')) == NULL)
		return (NULL);
	return (at + 1);
}

/*
 * Does a model rule name this principal? Its email counts only when
 * verified (access.require_verified_email): someone admitted through a
 * group must not reach a rule for ceo@example.com by claiming that
 * address at an IdP that never checked it.
 */
static int
rule_applies(const struct config *c, const struct model_rule *mr,
    const struct principal *p)
{
	size_t		 i;
	const char	*dom;

	if (mr->groups.n == 0 && mr->emails.n == 0 && mr->domains.n == 0)
		return (1);
	for (i = 0; i < mr->groups.n; i++) {
		if (strlist_contains(&p->groups, mr->groups.v[i]))
			return (1);
	}
	if (!p->email_verified && c->access_require_verified)
		return (0);
	if (p->email != NULL && strlist_contains_nocase(&mr->emails, p->email))
		return (1);
	if ((dom = email_domain(p->email)) != NULL &&
	    strlist_contains_nocase(&mr->domains, dom))
		return (1);
	return (0);
}

/*
 * glob_match() without regard to ASCII letter case: '*' matches any run,
 * '?' one character; one backtracking point, so never exponential.
 */
static int
model_glob(const char *pat, const char *s)
{
	const char	*star = NULL, *ss = NULL;

	while (*s != '\0') {
		if (*pat == '*') {
			star = pat++;
			ss = s;
		} else if (*pat == '?' || tolower((unsigned char)*pat) ==
		    tolower((unsigned char)*s)) {
			pat++;
			s++;
		} else if (star != NULL) {
			pat = star + 1;
			s = ++ss;
		} else
			return (0);
	}
	while (*pat == '*')
		pat++;
	return (*pat == '\0');
}

static int
globs_match(const struct strlist *l, const char *model)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (model_glob(l->v[i], model))
			return (1);
	}
	return (0);
}

/*
 * May this principal call this model (the id as the client named it,
 * decoded and checked by relay_id_decode())? 1 yes; 0 no, with *why safe
 * to show.
 */
int
policy_model_allowed(const struct config *c, const struct principal *p,
    const char *model, const char **why)
{
	size_t			 i;
	const struct model_rule	*mr;

	if (p->key_models.n != 0 && !globs_match(&p->key_models, model)) {
		*why = "this API key is not allowed to use this model";
		return (0);
	}
	for (i = 0; i < c->nmodel_rules; i++) {
		mr = &c->model_rules[i];
		if (!rule_applies(c, mr, p))
			continue;
		if (globs_match(&mr->deny, model)) {
			*why = "this model is not allowed for you";
			return (0);
		}
		if (globs_match(&mr->allow, model))
			return (1);
	}
	if (c->models_default == 1) {
		*why = "this model is not allowed for you";
		return (0);
	}
	return (1);
}

void
policy_config_check(struct config *c, struct config_errors *errs)
{
	size_t			 i;
	struct model_rule	*mr;
	char			*name;

	for (i = 0; i < c->nmodel_rules; i++) {
		mr = &c->model_rules[i];
		if (mr->allow.n == 0 && mr->deny.n == 0) {
			xasprintf(&name, "models.rules.%zu", i);
			config_add_error(errs, c, name, "models.rules entry %zu has "
			    "neither allow nor deny; it would decide nothing", i);
			free(name);
		}
	}
	models_config_check(c, errs);
}

static struct bucket *
bucket_get(const char *kind, const char *id, const struct config *c)
{
	struct bucket	*b;
	char		*key;
	double		 now = now_mono(), dt;

	xasprintf(&key, "%s:%s", kind, id);
	HASH_FIND_STR(buckets, key, b);
	if (b == NULL) {
		b = xcalloc(1, sizeof *b);
		b->key = key;
		b->requests = (double)c->rl_requests_per_minute;
		b->tokens = (double)c->rl_tokens_per_minute;
		b->updated = now;
		HASH_ADD_KEYPTR(hh, buckets, b->key, strlen(b->key), b);
		return (b);
	}
	free(key);
	dt = now - b->updated;
	b->updated = now;
	b->requests += dt * (double)c->rl_requests_per_minute / 60.0;
	if (b->requests > (double)c->rl_requests_per_minute)
		b->requests = (double)c->rl_requests_per_minute;
	b->tokens += dt * (double)c->rl_tokens_per_minute / 60.0;
	if (b->tokens > (double)c->rl_tokens_per_minute)
		b->tokens = (double)c->rl_tokens_per_minute;
	return (b);
}

/* Seconds until a bucket allows one more call. */
static long long
bucket_wait(const struct bucket *b, const struct config *c)
{
	double	w = 0, t;

	if (c->rl_requests_per_minute > 0 && b->requests < 1) {
		t = (1 - b->requests) * 60.0 /
		    (double)c->rl_requests_per_minute;
		if (t > w)
			w = t;
	}
	if (c->rl_tokens_per_minute > 0 && b->tokens <= 0) {
		t = (-b->tokens + 1) * 60.0 / (double)c->rl_tokens_per_minute;
		if (t > w)
			w = t;
	}
	return ((long long)ceil(w));
}

/*
 * The shared limits (several daemons): the counts of the user's and the
 * API key's windows. 1 if allowed (counted); 0 if not, with the seconds
 * until the window ends in *retry.
 */
static int
ratelimit_check_shared(const struct config *c, const struct principal *p,
    long long *retry)
{
	char		*key[2];
	size_t		 n = 0, i;
	long long	 req, tok;
	time_t		 now = now_wall();
	int		 ok = 1;

	xasprintf(&key[n++], "u:%s", p->sub);
	if (p->key_id != NULL)
		xasprintf(&key[n++], "k:%s", p->key_id);
	for (i = 0; i < n; i++) {
		counters_get(key[i], RL_WINDOW, now, &req, &tok);
		if ((c->rl_requests_per_minute > 0 &&
		    req >= c->rl_requests_per_minute) ||
		    (c->rl_tokens_per_minute > 0 &&
		    tok >= c->rl_tokens_per_minute))
			ok = 0;
	}
	if (!ok)
		*retry = counters_window(RL_WINDOW, now) + RL_WINDOW -
		    (long long)now;
	else if (c->rl_requests_per_minute > 0) {
		for (i = 0; i < n; i++)
			counters_add(key[i], RL_WINDOW, now, 1, 0);
	}
	for (i = 0; i < n; i++)
		free(key[i]);
	if (*retry < 1 && !ok)
		*retry = 1;
	return (ok);
}

/*
 * Take one request from the user's bucket and the API key's. 1 if allowed;
 * 0 if not, with the seconds to wait in *retry.
 */
int
ratelimit_check(const struct config *c, const struct principal *p,
    long long *retry)
{
	struct bucket	*b[2];
	size_t		 n = 0, i;
	long long	 w, worst = 0;

	*retry = 0;
	if (c->rl_requests_per_minute == 0 && c->rl_tokens_per_minute == 0)
		return (1);
	if (counters_shared())
		return (ratelimit_check_shared(c, p, retry));
	b[n++] = bucket_get("u", p->sub, c);
	if (p->key_id != NULL)
		b[n++] = bucket_get("k", p->key_id, c);
	for (i = 0; i < n; i++) {
		if ((w = bucket_wait(b[i], c)) > worst)
			worst = w;
	}
	if (worst > 0) {
		*retry = worst;
		return (0);
	}
	if (c->rl_requests_per_minute > 0) {
		for (i = 0; i < n; i++)
			b[i]->requests -= 1;
	}
	return (1);
}

/* Charge the tokens a call used, once its usage is known. */
void
ratelimit_charge(const struct config *c, const struct principal *p,
    long long tokens)
{
	struct bucket	*b;
	char		*key;
	time_t		 now = now_wall();

	if (c->rl_tokens_per_minute == 0 || tokens <= 0)
		return;
	if (counters_shared()) {
		xasprintf(&key, "u:%s", p->sub);
		counters_add(key, RL_WINDOW, now, 0, tokens);
		free(key);
		if (p->key_id != NULL) {
			xasprintf(&key, "k:%s", p->key_id);
			counters_add(key, RL_WINDOW, now, 0, tokens);
			free(key);
		}
		return;
	}
	b = bucket_get("u", p->sub, c);
	b->tokens -= (double)tokens;
	if (p->key_id != NULL) {
		b = bucket_get("k", p->key_id, c);
		b->tokens -= (double)tokens;
	}
}

/* Forget buckets that have been full and idle for a while. */
void
ratelimit_sweep(void)
{
	struct bucket	*b, *tmp;
	double		 now = now_mono();

	HASH_ITER(hh, buckets, b, tmp) {
		if (now - b->updated > BUCKET_IDLE) {
			HASH_DEL(buckets, b);
			free(b->key);
			free(b);
		}
	}
}

/* Housekeeping, from the modules table. */
void
ratelimit_maint(time_t now)
{
	ratelimit_sweep();
	counters_maint(now);
}

void
ratelimit_free(void)
{
	struct bucket	*b, *tmp;

	HASH_ITER(hh, buckets, b, tmp) {
		HASH_DEL(buckets, b);
		free(b->key);
		free(b);
	}
	counters_free();
}
