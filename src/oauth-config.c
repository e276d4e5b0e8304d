/*
 * oauth-config.c: provider presets and the checks of oauth.* and access.*.
 *
 * A provider named google, github, microsoft, gitlab, auth0, okta or
 * cognito gets its endpoints, scopes and claim names from a preset and
 * needs only client_id and client_secret (plus a domain, tenant or pool
 * where the IdP has one); every preset value can be overridden. Any other
 * name is a custom provider: an issuer (OIDC discovery) or explicit
 * endpoints. Outbound URLs must be https, or http to loopback only.
 */

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bsp.h"
#include "crypto.h"

static void
set_default(char **field, const char *value)
{
	if (*field == NULL && value != NULL)
		*field = xstrdup(value);
}

static void
set_defaultf(char **field, const char *fmt, ...) printflike(2, 3);
static void
set_defaultf(char **field, const char *fmt, ...)
{
	va_list	ap;

	if (*field != NULL)
		return;
	va_start(ap, fmt);
	xvasprintf(field, fmt, ap);
	va_end(ap);
}

static void
scopes_default(struct provider_config *p, const char *list)
{
	char	*copy, *s, *w;

	if (p->scopes.n != 0)
		return;
	copy = s = xstrdup(list);
	while ((w = strsep(&s, " ")) != NULL) {
		if (*w != '\0')
			strlist_add(&p->scopes, w);
	}
	free(copy);
}

/* A host name for a URL: letters, digits, dots, dashes, and a port. */
static int
host_ok(const char *h)
{
	size_t	i, len = strlen(h);

	if (len == 0 || len > 253)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)h[i]) && h[i] != '.' &&
		    h[i] != '-' && h[i] != ':')
			return (0);
	}
	return (1);
}

/* Algorithms an identity provider may sign with: asymmetric only. */
static int
idp_alg_ok(const char *name)
{
	enum crypto_alg	a = crypto_alg_from_name(name);

	return (a != CRYPTO_ALG_NONE && a != CRYPTO_ALG_HS256 &&
	    a != CRYPTO_ALG_HS384 && a != CRYPTO_ALG_HS512);
}

static const char *
preset_require(struct provider_config *p, const char *field,
    const char *value)
{
	return (value == NULL ? field : NULL);
}

/*
 * Fill a provider from its preset. Returns NULL or the name of a key the
 * preset needs and did not get.
 */
static const char *
provider_preset(struct config *c, struct provider_config *p)
{
	const char	*missing = NULL, *t;
	char		*base;

	p->kind = PROVIDER_CUSTOM;
	if (strcmp(p->name, "google") == 0) {
		p->kind = PROVIDER_GOOGLE;
		set_default(&p->display_name, "Google");
		set_default(&p->issuer, "https://accounts.google.com");
		scopes_default(p, "openid email profile");
	} else if (strcmp(p->name, "github") == 0) {
		p->kind = PROVIDER_GITHUB;
		set_default(&p->display_name, "GitHub");
		set_default(&p->authorization_url,
		    "https://github.com/login/oauth/authorize");
		set_default(&p->token_url,
		    "https://github.com/login/oauth/access_token");
		set_default(&p->user_info_url, "https://api.github.com/user");
		set_default(&p->emails_url, "https://api.github.com/user/emails");
		set_default(&p->orgs_url, "https://api.github.com/user/orgs");
		set_default(&p->user_id_field, "id");
		set_default(&p->email_field, "email");
		set_default(&p->name_field, "name");
		scopes_default(p, c->access_github_orgs.n != 0 ?
		    "read:user user:email read:org" : "read:user user:email");
		if (p->token_auth == 0)
			p->token_auth = 2;
	} else if (strcmp(p->name, "microsoft") == 0) {
		p->kind = PROVIDER_MICROSOFT;
		set_default(&p->display_name, "Microsoft");
		set_default(&p->tenant_id, "organizations");
		t = p->tenant_id;
		if (strcmp(t, "common") == 0 || strcmp(t, "organizations") == 0 ||
		    strcmp(t, "consumers") == 0)
			p->multi_tenant = 1;
		set_defaultf(&p->issuer, "https://login.microsoftonline.com/"
		    "%s/v2.0%s", t, "");
		scopes_default(p, "openid email profile");
	} else if (strcmp(p->name, "gitlab") == 0) {
		p->kind = PROVIDER_GITLAB;
		set_default(&p->display_name, "GitLab");
		set_default(&p->instance_url, "https://gitlab.com");
		base = xstrdup(p->instance_url);
		while (*base != '\0' && base[strlen(base) - 1] == '/')
			base[strlen(base) - 1] = '\0';
		set_default(&p->issuer, base);
		free(base);
		scopes_default(p, "openid email profile");
	} else if (strcmp(p->name, "auth0") == 0) {
		p->kind = PROVIDER_AUTH0;
		set_default(&p->display_name, "Auth0");
		if ((missing = preset_require(p, "domain", p->domain)) == NULL)
			set_defaultf(&p->issuer, "https://%s/%s", p->domain, "");
		scopes_default(p, "openid email profile");
	} else if (strcmp(p->name, "okta") == 0) {
		p->kind = PROVIDER_OKTA;
		set_default(&p->display_name, "Okta");
		set_default(&p->authorization_server, "default");
		set_default(&p->groups_field, "groups");
		if ((missing = preset_require(p, "domain", p->domain)) == NULL) {
			if (*p->authorization_server == '\0')
				set_defaultf(&p->issuer, "https://%s%s",
				    p->domain, "");
			else
				set_defaultf(&p->issuer, "https://%s/oauth2/%s",
				    p->domain, p->authorization_server);
		}
		scopes_default(p, "openid email profile");
	} else if (strcmp(p->name, "cognito") == 0) {
		p->kind = PROVIDER_COGNITO;
		set_default(&p->display_name, "Amazon Cognito");
		set_default(&p->groups_field, "cognito:groups");
		if ((missing = preset_require(p, "domain", p->domain)) == NULL &&
		    (missing = preset_require(p, "region", p->region)) == NULL &&
		    (missing = preset_require(p, "user_pool_id",
		    p->user_pool_id)) == NULL) {
			set_defaultf(&p->issuer, "https://cognito-idp.%s."
			    "amazonaws.com/%s", p->region, p->user_pool_id);
			set_defaultf(&p->authorization_url,
			    "https://%s/oauth2/authorize%s", p->domain, "");
			set_defaultf(&p->token_url, "https://%s/oauth2/token%s",
			    p->domain, "");
			set_defaultf(&p->user_info_url,
			    "https://%s/oauth2/userInfo%s", p->domain, "");
		}
		scopes_default(p, "openid email profile");
	}
	set_default(&p->display_name, p->name);
	if (p->kind != PROVIDER_GITHUB)
		scopes_default(p, p->issuer != NULL ? "openid email profile" :
		    "");
	set_default(&p->user_id_field, "sub");
	set_default(&p->email_field, "email");
	set_default(&p->email_verified_field, "email_verified");
	set_default(&p->name_field, "name");
	set_default(&p->groups_field, "groups");
	p->oidc = p->issuer != NULL;
	return (missing);
}

static void
check_url(struct config *c, struct config_errors *errs, const char *key,
    const char *url)
{
	char	*cause;

	if (url == NULL)
		return;
	if (url_check_outbound(url, &cause) == -1) {
		config_add_error(errs, c, key, "%s: %s", key, cause);
		free(cause);
	}
}

/* Names our own users carry as their provider. */
static int
name_reserved(const char *name)
{
	return (strcmp(name, "local") == 0 || strcmp(name, "legacy") == 0);
}

/* One entry of oauth.providers: its preset, its URLs, its algorithms. */
static void
provider_check(struct config *c, struct config_errors *errs,
    struct provider_config *p)
{
	const char	*missing, *v;
	char		*key;
	size_t		 j;
	static const struct {
		const char	*name;
		size_t		 off;
	} urlkeys[] = {
#define U(f) { #f, offsetof(struct provider_config, f) }
		U(issuer), U(authorization_url), U(token_url),
		U(user_info_url), U(jwks_uri), U(emails_url), U(orgs_url),
		U(redirect_uri),
#undef U
	};

	if (name_reserved(p->name)) {
		xasprintf(&key, "oauth.providers.%s", p->name);
		config_add_error(errs, c, key, "oauth.providers: the name "
		    "\"%s\" is reserved (it names users made on the host or "
		    "by legacy tokens)", p->name);
		free(key);
	}
	if ((missing = provider_preset(c, p)) != NULL) {
		xasprintf(&key, "oauth.providers.%s", p->name);
		config_add_error(errs, c, key, "oauth.providers.%s needs %s",
		    p->name, missing);
		free(key);
		return;
	}
	if (p->client_id == NULL) {
		xasprintf(&key, "oauth.providers.%s", p->name);
		config_add_error(errs, c, key, "oauth.providers.%s needs "
		    "client_id", p->name);
		free(key);
	}
	if (p->domain != NULL && !host_ok(p->domain)) {
		xasprintf(&key, "oauth.providers.%s.domain", p->name);
		config_add_error(errs, c, key, "%s: \"%s\" is not a host name",
		    key, p->domain);
		free(key);
	}
	if (!p->oidc && (p->authorization_url == NULL ||
	    p->token_url == NULL || p->user_info_url == NULL)) {
		xasprintf(&key, "oauth.providers.%s", p->name);
		config_add_error(errs, c, key, "oauth.providers.%s needs an "
		    "issuer (OIDC discovery) or authorization_url, token_url "
		    "and user_info_url", p->name);
		free(key);
	}
	for (j = 0; j < nitems(urlkeys); j++) {
		v = *(char *const *)((const char *)p + urlkeys[j].off);
		xasprintf(&key, "oauth.providers.%s.%s", p->name,
		    urlkeys[j].name);
		if (urlkeys[j].off == offsetof(struct provider_config,
		    redirect_uri)) {
			/* Our own callback, as the browser sees it. */
			if (v != NULL && strncmp(v, "https://", 8) != 0 &&
			    strncmp(v, "http://", 7) != 0)
				config_add_error(errs, c, key, "%s must be an "
				    "http(s) URL", key);
		} else
			check_url(c, errs, key, v);
		free(key);
	}
	for (j = 0; j < p->algorithms.n; j++) {
		if (!idp_alg_ok(p->algorithms.v[j])) {
			xasprintf(&key, "oauth.providers.%s.algorithms",
			    p->name);
			config_add_error(errs, c, key, "%s: \"%s\" is not an "
			    "algorithm ID tokens may use", key,
			    p->algorithms.v[j]);
			free(key);
		}
	}
	if (p->multi_tenant && c->access_tenants.n == 0 &&
	    !c->access_any_user) {
		xasprintf(&key, "oauth.providers.%s.tenant_id", p->name);
		config_add_error(errs, c, key, "oauth.providers.%s uses the "
		    "multi-tenant endpoint \"%s\": set access.allowed_tenants "
		    "to the tenants whose users may log in", p->name,
		    p->tenant_id);
		free(key);
	}
}

/* Entry i of oauth.trusted_issuers: issuer, audience, a name of its own. */
static void
issuer_check(struct config *c, struct config_errors *errs, size_t i)
{
	struct issuer_config		*is = &c->issuers[i];
	const struct provider_config	*lp;
	char				*key;
	size_t				 j;

	xasprintf(&key, "oauth.trusted_issuers.%zu", i);
	if (is->issuer == NULL)
		config_add_error(errs, c, key, "%s needs issuer", key);
	if (is->audience.n == 0)
		config_add_error(errs, c, key, "%s needs audience (the aud or "
		    "client_id values to accept)", key);
	check_url(c, errs, key, is->issuer);
	check_url(c, errs, key, is->jwks_uri);
	/*
	 * Its users are provider_name:subject; a name shared with a login
	 * provider on another issuer, another trusted issuer or our own
	 * users would let one identity provider speak for another's users.
	 * The login provider on the same issuer (a Cognito pool's hosted UI
	 * and its access tokens) is fine.
	 */
	if (is->provider_name == NULL)
		is->provider_name = xstrdup("");
	if (!config_name_ok(is->provider_name) ||
	    name_reserved(is->provider_name))
		config_add_error(errs, c, key, "%s.provider_name: \"%s\" must "
		    "match [a-z0-9_-]{1,32} and not be local or legacy", key,
		    is->provider_name);
	else if ((lp = provider_find(c, is->provider_name,
	    strlen(is->provider_name))) != NULL && (lp->issuer == NULL ||
	    is->issuer == NULL || strcmp(lp->issuer, is->issuer) != 0))
		config_add_error(errs, c, key, "%s.provider_name: \"%s\" is a "
		    "login provider with another issuer; give each issuer a "
		    "name of its own", key, is->provider_name);
	for (j = 0; j < i; j++) {
		if (strcmp(c->issuers[j].provider_name,
		    is->provider_name) == 0) {
			config_add_error(errs, c, key, "%s.provider_name: \"%s\" "
			    "is already the name of trusted issuer %zu; give "
			    "each issuer a name of its own", key,
			    is->provider_name, j);
			break;
		}
	}
	for (j = 0; j < is->algorithms.n; j++) {
		if (!idp_alg_ok(is->algorithms.v[j]))
			config_add_error(errs, c, key, "%s: \"%s\" is not an "
			    "accepted algorithm", key, is->algorithms.v[j]);
	}
	free(key);
}

/* access.*: somebody is restricted, and the domains are domains. */
static void
access_check(struct config *c, struct config_errors *errs)
{
	size_t	i;

	if ((c->nproviders > 0 || c->nissuers > 0) && !c->access_any_user &&
	    c->access_domains.n == 0 && c->access_emails.n == 0 &&
	    c->access_groups.n == 0 && c->access_github_orgs.n == 0 &&
	    c->access_tenants.n == 0)
		config_add_error(errs, c, c->nproviders > 0 ? "oauth.providers" :
		    "oauth.trusted_issuers", "login is configured but nobody is "
		    "restricted: set access.allowed_email_domains, "
		    "allowed_emails, allowed_groups, github_orgs or "
		    "allowed_tenants, or access.allow_any_user: true");
	for (i = 0; i < c->access_domains.n; i++) {
		if (strchr(c->access_domains.v[i], '@') != NULL ||
		    !host_ok(c->access_domains.v[i]))
			config_add_error(errs, c, "access.allowed_email_domains",
			    "access.allowed_email_domains: \"%s\" is not a domain",
			    c->access_domains.v[i]);
	}
}

/* Check and complete oauth.providers, oauth.trusted_issuers, access.*. */
void
oauth_config_check(struct config *c, struct config_errors *errs)
{
	size_t	i;

	for (i = 0; i < c->nproviders; i++)
		provider_check(c, errs, &c->providers[i]);
	for (i = 0; i < c->nissuers; i++)
		issuer_check(c, errs, i);
	access_check(c, errs);
}

/* The provider named name, or NULL. */
const struct provider_config *
provider_find(const struct config *c, const char *name, size_t len)
{
	size_t	i;

	for (i = 0; i < c->nproviders; i++) {
		if (strlen(c->providers[i].name) == len &&
		    strncmp(c->providers[i].name, name, len) == 0)
			return (&c->providers[i]);
	}
	return (NULL);
}
