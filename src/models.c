/*
 * models.c: model names. Anthropic's ids (claude-sonnet-4-5,
 * claude-opus-4-1-20250805) are resolved to Bedrock model or inference
 * profile ids through an alias table: models.aliases from the
 * configuration first, then the built-in table below (unless
 * models.builtin_aliases is off). An alias may name another alias; a chain
 * longer than MODELS_MAX_HOPS is a loop. What no alias names is taken as a
 * Bedrock id when it has the form of one, mapped to "anthropic.<id>" when
 * it is a claude-* name and models.map_unlisted is on, and unknown
 * otherwise. A foundation-model id ("anthropic....") reached through the
 * table gets the region prefix of an inference profile
 * (models.region_prefix); an id the client named itself is used as given.
 * The model policy (policy.c) sees the Bedrock id this returns.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"

#define MODELS_MAX_HOPS	8

struct builtin_alias {
	const char	*id;
	const char	*bedrock_id;	/* or another alias */
	const char	*display_name;
};

/*
 * Dated Anthropic ids and their Bedrock foundation-model ids (Bedrock's
 * model catalogue), the undated names Anthropic's API also takes, and the
 * newer generations, whose Bedrock ids carry no date or version.
 */
static const struct builtin_alias builtin_aliases[] = {
	{ "claude-3-haiku-20240307", "anthropic.claude-3-haiku-20240307-v1:0",
	  "Claude Haiku 3" },
	{ "claude-3-5-haiku-20241022",
	  "anthropic.claude-3-5-haiku-20241022-v1:0", "Claude Haiku 3.5" },
	{ "claude-3-7-sonnet-20250219",
	  "anthropic.claude-3-7-sonnet-20250219-v1:0", "Claude Sonnet 3.7" },
	{ "claude-sonnet-4-20250514", "anthropic.claude-sonnet-4-20250514-v1:0",
	  "Claude Sonnet 4" },
	{ "claude-opus-4-20250514", "anthropic.claude-opus-4-20250514-v1:0",
	  "Claude Opus 4" },
	{ "claude-opus-4-1-20250805",
	  "anthropic.claude-opus-4-1-20250805-v1:0", "Claude Opus 4.1" },
	{ "claude-sonnet-4-5-20250929",
	  "anthropic.claude-sonnet-4-5-20250929-v1:0", "Claude Sonnet 4.5" },
	{ "claude-haiku-4-5-20251001",
	  "anthropic.claude-haiku-4-5-20251001-v1:0", "Claude Haiku 4.5" },
	{ "claude-opus-4-5-20251101",
	  "anthropic.claude-opus-4-5-20251101-v1:0", "Claude Opus 4.5" },
	{ "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", NULL },
	{ "claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219", NULL },
	{ "claude-sonnet-4-0", "claude-sonnet-4-20250514", NULL },
	{ "claude-opus-4-0", "claude-opus-4-20250514", NULL },
	{ "claude-opus-4-1", "claude-opus-4-1-20250805", NULL },
	{ "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", NULL },
	{ "claude-haiku-4-5", "claude-haiku-4-5-20251001", NULL },
	{ "claude-opus-4-5", "claude-opus-4-5-20251101", NULL },
	{ "claude-opus-4-6", "anthropic.claude-opus-4-6-v1", "Claude Opus 4.6" },
	{ "claude-sonnet-4-6", "anthropic.claude-sonnet-4-6",
	  "Claude Sonnet 4.6" },
	{ "claude-opus-4-7", "anthropic.claude-opus-4-7", "Claude Opus 4.7" },
	{ "claude-sonnet-5", "anthropic.claude-sonnet-5", "Claude Sonnet 5" },
	{ "claude-opus-5", "anthropic.claude-opus-5", "Claude Opus 5" },
	{ "claude-opus-5-5", "anthropic.claude-opus-5-5", "Claude Opus 5.5" },
};

/* One alias, configured or built in. */
struct alias_ref {
	const char	*id;
	const char	*bedrock_id;
	const char	*display_name;
};

static int
alias_find(const struct config *c, const char *id, struct alias_ref *a)
{
	size_t	i;

	for (i = 0; i < c->nmodel_aliases; i++) {
		if (c->model_aliases[i].id != NULL &&
		    strcmp(c->model_aliases[i].id, id) == 0) {
			a->id = c->model_aliases[i].id;
			a->bedrock_id = c->model_aliases[i].bedrock_id;
			a->display_name = c->model_aliases[i].display_name;
			return (1);
		}
	}
	if (!c->models_builtin_aliases)
		return (0);
	for (i = 0; i < nitems(builtin_aliases); i++) {
		if (strcmp(builtin_aliases[i].id, id) == 0) {
			a->id = builtin_aliases[i].id;
			a->bedrock_id = builtin_aliases[i].bedrock_id;
			a->display_name = builtin_aliases[i].display_name;
			return (1);
		}
	}
	return (0);
}

/* An id in one of Bedrock's forms: "provider.model...", or an ARN. */
static int
models_is_bedrock_id(const char *s)
{
	return (strncmp(s, "arn:", 4) == 0 || strchr(s, '.') != NULL);
}

/*
 * The region prefix of the inference profiles for c (models.region_prefix;
 * "auto" derives it from aws.region), or "" for none.
 */
const char *
models_prefix(const struct config *c)
{
	const char	*p = c->models_region_prefix, *r = c->aws_region;

	if (p == NULL || strcmp(p, "none") == 0)
		return ("");
	if (strcmp(p, "auto") != 0)
		return (p);
	if (r == NULL)
		return ("us");
	if (strncmp(r, "us-gov-", 7) == 0)
		return ("us-gov");
	if (strncmp(r, "us-", 3) == 0)
		return ("us");
	if (strncmp(r, "eu-", 3) == 0)
		return ("eu");
	if (strncmp(r, "ap-", 3) == 0)
		return ("apac");
	return ("global");
}

/*
 * Resolve a client's model name to a Bedrock id: 0 with *bedrock
 * (xmalloc'd), and the alias table's display name and last id of the
 * chain when asked; or -1 with *why (static, safe to show).
 */
int
models_resolve(const struct config *c, const char *name, char **bedrock,
    const char **display, const char **last, const char **why)
{
	struct alias_ref	 a;
	const char		*cur = name, *pfx;
	int			 hops = 0, tabled = 0;

	*bedrock = NULL;
	if (display != NULL)
		*display = NULL;
	if (last != NULL)
		*last = NULL;
	while (alias_find(c, cur, &a)) {
		if (++hops > MODELS_MAX_HOPS) {
			*why = "the model's aliases form a loop (or a chain "
			    "too long to follow)";
			return (-1);
		}
		if (display != NULL && *display == NULL)
			*display = a.display_name;
		if (last != NULL)
			*last = a.id;
		cur = a.bedrock_id;
		tabled = 1;
	}
	if (models_is_bedrock_id(cur))
		*bedrock = xstrdup(cur);
	else if (c->models_map_unlisted && strncmp(cur, "claude-", 7) == 0) {
		xasprintf(bedrock, "anthropic.%s", cur);
		tabled = 1;
	} else {
		*why = "unknown model: it is not a Bedrock model id, and no "
		    "alias of this proxy names it";
		return (-1);
	}
	pfx = models_prefix(c);
	if (tabled && *pfx != '\0' && strncmp(*bedrock, "anthropic.", 10) == 0) {
		char	*p;

		xasprintf(&p, "%s.%s", pfx, *bedrock);
		free(*bedrock);
		*bedrock = p;
	}
	return (0);
}

/*
 * Each alias id (configured ones first, then the built-in ones not
 * configured over), with its display name and the last id of its chain,
 * to cb; ids that do not resolve are left out.
 */
void
models_list(const struct config *c, void (*cb)(void *, const char *,
    const char *, const char *, const char *), void *arg)
{
	struct alias_ref	 a;
	const char		*display, *last, *why;
	char			*bedrock;
	size_t			 i, n;

	n = c->nmodel_aliases + (c->models_builtin_aliases ?
	    nitems(builtin_aliases) : 0);
	for (i = 0; i < n; i++) {
		if (i < c->nmodel_aliases)
			a.id = c->model_aliases[i].id;
		else {
			a.id = builtin_aliases[i - c->nmodel_aliases].id;
			if (!alias_find(c, a.id, &a) ||
			    a.bedrock_id != builtin_aliases[i -
			    c->nmodel_aliases].bedrock_id)
				continue;	/* configured over */
		}
		if (a.id == NULL || models_resolve(c, a.id, &bedrock, &display,
		    &last, &why) == -1)
			continue;
		cb(arg, a.id, display, last, bedrock);
		free(bedrock);
	}
}

/* models.aliases and models.region_prefix: ids, loops, the prefix. */
void
models_config_check(struct config *c, struct config_errors *errs)
{
	struct model_alias	*ma;
	const char		*p = c->models_region_prefix, *why;
	char			*name, *b;
	size_t			 i, j;

	for (i = 0; i < c->nmodel_aliases; i++) {
		ma = &c->model_aliases[i];
		xasprintf(&name, "models.aliases.%zu", i);
		if (ma->id == NULL || ma->bedrock_id == NULL)
			config_add_error(errs, c, name, "%s: id and bedrock_id "
			    "are both required", name);
		else if (ma->id[0] == '\0' || !str_is_printable(ma->id,
		    strlen(ma->id)) || ma->bedrock_id[0] == '\0' ||
		    !str_is_printable(ma->bedrock_id, strlen(ma->bedrock_id)))
			config_add_error(errs, c, name, "%s: id and bedrock_id "
			    "must be printable and not empty", name);
		else {
			for (j = 0; j < i; j++) {
				if (c->model_aliases[j].id != NULL &&
				    strcmp(c->model_aliases[j].id, ma->id) ==
				    0)
					config_add_error(errs, c, name, "%s: "
					    "\"%s\" is already an alias "
					    "(models.aliases.%zu)", name, ma->id,
					    j);
			}
			if (models_resolve(c, ma->id, &b, NULL, NULL, &why) ==
			    -1)
				config_add_error(errs, c, name, "%s: \"%s\": %s",
				    name, ma->id, why);
			free(b);
		}
		free(name);
	}
	if (p != NULL && strcmp(p, "auto") != 0 && strcmp(p, "none") != 0) {
		for (i = 0; p[i] != '\0'; i++) {
			if (!((p[i] >= 'a' && p[i] <= 'z') || p[i] == '-'))
				break;
		}
		if (i == 0 || p[i] != '\0' || i > 16)
			config_add_error(errs, c, "models.region_prefix",
			    "models.region_prefix: \"%s\" is not auto, none or "
			    "a prefix such as us, eu, apac or global", p);
	}
}
