/*
 * config.c: configuration loading.
 *
 * Layers, later ones winning: compiled defaults (config-table.c), the YAML
 * (or JSON) file, BEDROCK_* environment variables, -D key=value flags. All
 * of them are first merged into one tree of nodes that remember where each
 * value came from, then the tree is checked against the keyword table and
 * copied into a struct config. Every problem found is collected with its
 * origin ("file:line", "environment BEDROCK_X", "-D key") so one run reports
 * them all. A struct config is immutable once built and reference counted,
 * so a reload can swap it under requests that are still running.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#include "bsp.h"

#define CONFIG_FILE_MAX		(1024 * 1024)
#define CONFIG_DEPTH_MAX	16
#define SECRET_FILE_MAX		(64 * 1024)

struct config	*cfg;

enum cnode_kind {
	CN_SCALAR,
	CN_MAP,
	CN_SEQ,
};
struct cnode {
	enum cnode_kind	  kind;
	char		 *key;
	char		 *value;
	int		  null;		/* plain null, ~ or empty */
	int		  from_env;	/* a scalar list may be comma-split */
	char		 *where;
	struct cnode	**kids;
	size_t		  nkids;
};

static struct cnode	*cnode_new(enum cnode_kind, const char *, const char *);
static void		 cnode_free(struct cnode *);
static struct cnode	*cnode_child(struct cnode *, const char *);
static void		 cnode_add(struct cnode *, struct cnode *);
static void		 config_error(struct config_errors *, const char *,
			     const char *, ...) printflike(3, 4);
static int		 config_parse_file(const char *, struct cnode **,
			     struct config_errors *);
static void		 config_set_path(struct cnode *, const char *,
			     const char *, const char *, struct config_errors *);
static void		 config_set_defaults(enum config_scope, void *);
static void		 config_walk(struct config *, struct cnode *,
			     const char *, enum config_scope, void *,
			     struct config_errors *);
static void		 config_free_scope(enum config_scope, void *);
static void		 config_finish(struct config *, struct config_errors *);
static void		 config_drop_sibling(struct cnode *, const char *);
static void		 config_finish_free(struct config *);
static void		 config_take_arn(struct config *,
			    const struct config_key *, struct cnode *, void *,
			    const char *, struct config_errors *);

/* The source being loaded (config_load), for the KEY_arn values. */
static const struct config_source	*config_src;

static struct cnode *
cnode_new(enum cnode_kind kind, const char *key, const char *where)
{
	struct cnode	*n;

	n = xcalloc(1, sizeof *n);
	n->kind = kind;
	if (key != NULL)
		n->key = xstrdup(key);
	n->where = xstrdup(where);
	return (n);
}

static void
cnode_free(struct cnode *n)
{
	size_t	i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++)
		cnode_free(n->kids[i]);
	free(n->kids);
	free(n->key);
	if (n->value != NULL)
		freezero_str(n->value);
	free(n->where);
	free(n);
}

static struct cnode *
cnode_child(struct cnode *n, const char *key)
{
	size_t	i;

	for (i = 0; i < n->nkids; i++) {
		if (n->kids[i]->key != NULL && strcmp(n->kids[i]->key, key) == 0)
			return (n->kids[i]);
	}
	return (NULL);
}

static void
cnode_add(struct cnode *parent, struct cnode *kid)
{
	parent->kids = xreallocarray(parent->kids, parent->nkids + 1,
	    sizeof *parent->kids);
	parent->kids[parent->nkids++] = kid;
}

static void
config_error(struct config_errors *errs, const char *where, const char *fmt,
    ...)
{
	va_list	ap;

	errs->v = xreallocarray(errs->v, errs->n + 1, sizeof *errs->v);
	errs->v[errs->n].where = xstrdup(where != NULL ? where : "config");
	va_start(ap, fmt);
	xvasprintf(&errs->v[errs->n].msg, fmt, ap);
	va_end(ap);
	errs->n++;
}

void
config_errors_print(const struct config_errors *errs, FILE *f)
{
	size_t	i;

	for (i = 0; i < errs->n; i++)
		fprintf(f, "%s: %s\n", errs->v[i].where, errs->v[i].msg);
}

void
config_errors_free(struct config_errors *errs)
{
	size_t	i;

	for (i = 0; i < errs->n; i++) {
		free(errs->v[i].where);
		free(errs->v[i].msg);
	}
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

/*
 * Read a regular file of at most max bytes from an open descriptor into a
 * NUL-terminated buffer (the file checked is the file read).
 */
static int
config_read_fd(int fd, size_t max, char **buf, size_t *len, char **cause)
{
	struct stat	 st;
	ssize_t		 n;
	size_t		 off = 0;

	*buf = NULL;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "not a regular file");
		return (-1);
	}
	if ((uintmax_t)st.st_size > max) {
		xasprintf(cause, "larger than %zu bytes", max);
		return (-1);
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, *buf + off, (size_t)st.st_size - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			xasprintf(cause, "read error: %s",
			    n == 0 ? "short read" : strerror(errno));
			freezero(*buf, (size_t)st.st_size + 1);
			*buf = NULL;
			return (-1);
		}
		off += (size_t)n;
	}
	(*buf)[off] = '\0';
	*len = off;
	return (0);
}

/*
 * YAML. libyaml's event parser builds the node tree; aliases are refused (no
 * billion laughs), nesting is bounded, duplicate keys are errors.
 */
struct yaml_ctx {
	const char		*path;
	struct config_errors	*errs;
	yaml_parser_t		 parser;
	int			 failed;
};

static char *
yaml_where(struct yaml_ctx *y, const yaml_mark_t *m)
{
	char	*w;

	xasprintf(&w, "%s:%zu", y->path, m->line + 1);
	return (w);
}

static struct cnode	*yaml_node(struct yaml_ctx *, yaml_event_t *, int);

static int
yaml_next(struct yaml_ctx *y, yaml_event_t *ev)
{
	char	*w;

	if (!yaml_parser_parse(&y->parser, ev)) {
		xasprintf(&w, "%s:%zu", y->path, y->parser.problem_mark.line + 1);
		config_error(y->errs, w, "YAML syntax error: %s%s%s",
		    y->parser.problem != NULL ? y->parser.problem : "unknown",
		    y->parser.context != NULL ? " " : "",
		    y->parser.context != NULL ? y->parser.context : "");
		free(w);
		y->failed = 1;
		return (-1);
	}
	return (0);
}

static struct cnode *
yaml_mapping(struct yaml_ctx *y, yaml_event_t *start, int depth)
{
	struct cnode	*map, *kid;
	yaml_event_t	 ev;
	char		*w, *key;

	w = yaml_where(y, &start->start_mark);
	map = cnode_new(CN_MAP, NULL, w);
	free(w);
	for (;;) {
		if (yaml_next(y, &ev) == -1)
			goto out;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			return (map);
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			w = yaml_where(y, &ev.start_mark);
			config_error(y->errs, w, "mapping keys must be plain "
			    "strings");
			free(w);
			yaml_event_delete(&ev);
			y->failed = 1;
			goto out;
		}
		key = xstrdup((char *)ev.data.scalar.value);
		if (cnode_child(map, key) != NULL) {
			w = yaml_where(y, &ev.start_mark);
			config_error(y->errs, w, "duplicate key \"%s\"", key);
			free(w);
		}
		yaml_event_delete(&ev);
		if (yaml_next(y, &ev) == -1) {
			free(key);
			goto out;
		}
		kid = yaml_node(y, &ev, depth + 1);
		yaml_event_delete(&ev);
		if (kid == NULL) {
			free(key);
			goto out;
		}
		kid->key = key;
		cnode_add(map, kid);
	}
out:
	cnode_free(map);
	return (NULL);
}

static struct cnode *
yaml_sequence(struct yaml_ctx *y, yaml_event_t *start, int depth)
{
	struct cnode	*seq, *kid;
	yaml_event_t	 ev;
	char		*w;

	w = yaml_where(y, &start->start_mark);
	seq = cnode_new(CN_SEQ, NULL, w);
	free(w);
	for (;;) {
		if (yaml_next(y, &ev) == -1)
			goto out;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return (seq);
		}
		kid = yaml_node(y, &ev, depth + 1);
		yaml_event_delete(&ev);
		if (kid == NULL)
			goto out;
		cnode_add(seq, kid);
	}
out:
	cnode_free(seq);
	return (NULL);
}

static struct cnode *
yaml_node(struct yaml_ctx *y, yaml_event_t *ev, int depth)
{
	struct cnode	*n;
	char		*w;
	const char	*v;

	w = yaml_where(y, &ev->start_mark);
	if (depth > CONFIG_DEPTH_MAX) {
		config_error(y->errs, w, "nesting deeper than %d levels",
		    CONFIG_DEPTH_MAX);
		free(w);
		y->failed = 1;
		return (NULL);
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n = cnode_new(CN_SCALAR, NULL, w);
		v = (const char *)ev->data.scalar.value;
		n->value = xstrdup(v);
		if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		    (*v == '\0' || strcmp(v, "~") == 0 ||
		    strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
		    strcmp(v, "NULL") == 0))
			n->null = 1;
		break;
	case YAML_MAPPING_START_EVENT:
		n = yaml_mapping(y, ev, depth);
		break;
	case YAML_SEQUENCE_START_EVENT:
		n = yaml_sequence(y, ev, depth);
		break;
	case YAML_ALIAS_EVENT:
		config_error(y->errs, w, "YAML aliases are not supported");
		y->failed = 1;
		n = NULL;
		break;
	default:
		config_error(y->errs, w, "unexpected YAML event");
		y->failed = 1;
		n = NULL;
		break;
	}
	free(w);
	return (n);
}

static int
config_read_file(const char *path, char **buf, size_t *len, char **cause)
{
	int	fd, rc;

	*buf = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "cannot open: %s", strerror(errno));
		return (-1);
	}
	rc = config_read_fd(fd, CONFIG_FILE_MAX, buf, len, cause);
	close(fd);
	return (rc);
}

static int
config_parse_file(const char *path, struct cnode **root,
    struct config_errors *errs)
{
	struct yaml_ctx	 y;
	yaml_event_t	 ev;
	char		*buf, *cause, *w;
	size_t		 len;
	int		 docs = 0;

	*root = NULL;
	if (config_read_file(path, &buf, &len, &cause) == -1) {
		config_error(errs, path, "%s", cause);
		free(cause);
		return (-1);
	}
	memset(&y, 0, sizeof y);
	y.path = path;
	y.errs = errs;
	if (!yaml_parser_initialize(&y.parser))
		fatalx("yaml_parser_initialize");
	yaml_parser_set_input_string(&y.parser, (unsigned char *)buf, len);
	for (;;) {
		if (yaml_next(&y, &ev) == -1)
			break;
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_DOCUMENT_START_EVENT) {
			if (++docs > 1) {
				w = yaml_where(&y, &ev.start_mark);
				config_error(errs, w, "only one YAML document "
				    "is allowed");
				free(w);
				yaml_event_delete(&ev);
				y.failed = 1;
				break;
			}
			yaml_event_delete(&ev);
			continue;
		}
		if (ev.type == YAML_STREAM_START_EVENT ||
		    ev.type == YAML_DOCUMENT_END_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (ev.type == YAML_SCALAR_EVENT && *root == NULL &&
		    ev.data.scalar.length == 0) {
			/* An empty document. */
			yaml_event_delete(&ev);
			continue;
		}
		if (ev.type != YAML_MAPPING_START_EVENT || *root != NULL) {
			w = yaml_where(&y, &ev.start_mark);
			config_error(errs, w, "the top level must be a mapping "
			    "of keys");
			free(w);
			yaml_event_delete(&ev);
			y.failed = 1;
			break;
		}
		*root = yaml_node(&y, &ev, 0);
		yaml_event_delete(&ev);
		if (*root == NULL)
			break;
	}
	yaml_parser_delete(&y.parser);
	freezero(buf, len);
	if (y.failed) {
		cnode_free(*root);
		*root = NULL;
		return (-1);
	}
	if (*root == NULL)
		*root = cnode_new(CN_MAP, NULL, path);
	return (0);
}

/*
 * Set "a.b.c" = value in the tree, creating maps on the way. A numeric
 * segment indexes into a sequence (oauth.trusted_issuers.0.issuer).
 */
static void
config_set_path(struct cnode *root, const char *path, const char *value,
    const char *where, struct config_errors *errs)
{
	char		*copy, *p, *seg, *next;
	struct cnode	*n = root, *kid;
	char		*end;
	long		 idx;

	copy = p = xstrdup(path);
	seg = strsep(&p, ".");
	while (seg != NULL) {
		next = strsep(&p, ".");
		if (*seg == '\0') {
			config_error(errs, where, "empty path segment in "
			    "\"%s\"", path);
			goto out;
		}
		if (n->kind == CN_SEQ) {
			errno = 0;
			idx = strtol(seg, &end, 10);
			if (*end != '\0' || errno != 0 || idx < 0 || idx > 64) {
				config_error(errs, where, "\"%s\": \"%s\" is "
				    "not a list index", path, seg);
				goto out;
			}
			while (n->nkids <= (size_t)idx)
				cnode_add(n, cnode_new(CN_MAP, NULL, where));
			kid = n->kids[idx];
		} else if (n->kind == CN_MAP) {
			kid = cnode_child(n, seg);
			if (kid == NULL) {
				kid = cnode_new(CN_SCALAR, seg, where);
				cnode_add(n, kid);
			}
		} else {
			config_error(errs, where, "\"%s\" goes inside a value "
			    "that is not a mapping", path);
			goto out;
		}
		if (next == NULL && n->kind == CN_MAP)
			config_drop_sibling(n, seg);
		if (next == NULL) {
			/* Leaf: replace whatever was there. */
			size_t i;

			for (i = 0; i < kid->nkids; i++)
				cnode_free(kid->kids[i]);
			free(kid->kids);
			kid->kids = NULL;
			kid->nkids = 0;
			kid->kind = CN_SCALAR;
			if (kid->value != NULL)
				freezero_str(kid->value);
			kid->value = xstrdup(value);
			kid->null = 0;
			kid->from_env = 1;
			free(kid->where);
			kid->where = xstrdup(where);
		} else if (kid->kind == CN_SCALAR) {
			/* Becomes a container; a digit next means a list. */
			kid->kind = isdigit((unsigned char)*next) ? CN_SEQ :
			    CN_MAP;
			if (kid->value != NULL)
				freezero_str(kid->value);
			kid->value = NULL;
			free(kid->where);
			kid->where = xstrdup(where);
		}
		n = kid;
		seg = next;
	}
out:
	free(copy);
}

/*
 * A later layer that sets "secret" replaces an earlier "secret_file" and the
 * other way round, so the environment can override a file.
 */
static void
config_drop_sibling(struct cnode *map, const char *key)
{
	size_t	 len = strlen(key), i;
	char	*other;

	if (len > 5 && strcmp(key + len - 5, "_file") == 0)
		other = xstrndup(key, len - 5);
	else
		xasprintf(&other, "%s_file", key);
	for (i = 0; i < map->nkids; i++) {
		if (map->kids[i]->key != NULL &&
		    strcmp(map->kids[i]->key, other) == 0) {
			cnode_free(map->kids[i]);
			memmove(&map->kids[i], &map->kids[i + 1],
			    (map->nkids - i - 1) * sizeof *map->kids);
			map->nkids--;
			break;
		}
	}
	free(other);
}

/* BEDROCK_SERVER__PORT -> server.port; BEDROCK_A__B_C -> a.b_c */
static char *
config_env_path(const char *name)
{
	const char	*p;
	char		*out, *o;

	out = o = xmalloc(strlen(name) + 1);
	for (p = name; *p != '\0'; p++) {
		if (p[0] == '_' && p[1] == '_') {
			*o++ = '.';
			p++;
		} else
			*o++ = (char)tolower((unsigned char)*p);
	}
	*o = '\0';
	return (out);
}

const struct config_key *
config_key_find(const char *name, enum config_scope scope)
{
	size_t	i;

	for (i = 0; i < config_nkeys; i++) {
		if (config_keys[i].scope == scope &&
		    strcmp(config_keys[i].name, name) == 0)
			return (&config_keys[i]);
	}
	return (NULL);
}

/* Is there any key in this scope below "prefix."? */
static int
config_prefix_exists(const char *prefix, enum config_scope scope)
{
	size_t	i, len = strlen(prefix);

	for (i = 0; i < config_nkeys; i++) {
		if (config_keys[i].scope == scope &&
		    strncmp(config_keys[i].name, prefix, len) == 0 &&
		    config_keys[i].name[len] == '.')
			return (1);
	}
	return (0);
}

static const struct config_collection *
config_collection_find(const char *name)
{
	size_t	i;

	for (i = 0; i < config_ncollections; i++) {
		if (strcmp(config_collections[i].name, name) == 0)
			return (&config_collections[i]);
	}
	return (NULL);
}

static const char *
config_scope_prefix(enum config_scope scope)
{
	size_t	i;

	for (i = 0; i < config_ncollections; i++) {
		if (config_collections[i].scope == scope)
			return (config_collections[i].pattern);
	}
	return ("");
}

/*
 * Read a secret from a file: it must be a regular file that neither group
 * nor others can read. A symbolic link is followed (Kubernetes mounts
 * secrets as links into a ..data directory); what is checked is the file
 * it leads to, through the descriptor that is then read, so the check and
 * the read see the same file. Trailing newlines are dropped.
 */
int
config_read_secret_file(const char *path, char **out, char **cause)
{
	struct stat	 st;
	char		*buf, *why;
	size_t		 len;
	int		 fd;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		xasprintf(cause, "cannot open secret file %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "secret file %s is not a regular file", path);
		close(fd);
		return (-1);
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		xasprintf(cause, "secret file %s is readable by group or "
		    "others (mode %04o); chmod 600 it", path,
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return (-1);
	}
	if (config_read_fd(fd, SECRET_FILE_MAX, &buf, &len, &why) == -1) {
		xasprintf(cause, "secret file %s: %s", path, why);
		free(why);
		close(fd);
		return (-1);
	}
	close(fd);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len == 0) {
		xasprintf(cause, "secret file %s is empty", path);
		freezero(buf, 1);
		return (-1);
	}
	*out = buf;
	return (0);
}

/* A file named by a key that must not be readable by group or others. */
static int
config_check_perms(const char *path, char **cause)
{
	struct stat	st;

	if (stat(path, &st) == -1) {
		xasprintf(cause, "cannot stat %s: %s", path, strerror(errno));
		return (-1);
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		xasprintf(cause, "%s is readable by group or others (mode "
		    "%04o); chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		return (-1);
	}
	return (0);
}

static void
config_note_origin(struct config *c, const char *name, const char *where)
{
	c->origins = xreallocarray(c->origins, c->norigins + 1,
	    sizeof *c->origins);
	c->origins[c->norigins].name = xstrdup(name);
	c->origins[c->norigins].where = xstrdup(where);
	c->norigins++;
}

/* Where did this key's value come from? NULL if it is a default. */
const char *
config_where(const struct config *c, const char *name)
{
	size_t	i;

	for (i = c->norigins; i > 0; i--) {
		if (strcmp(c->origins[i - 1].name, name) == 0)
			return (c->origins[i - 1].where);
	}
	return (NULL);
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t			 i;

	for (i = 0; i < nitems(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return (0);
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return (0);
		}
	}
	return (-1);
}

/*
 * Store one scalar value for a key. Returns -1 (and reports) if the value
 * does not fit the key's type or bounds.
 */
static int
config_store(const struct config_key *k, const char *v, void *base,
    const char *where, const char *fullname, struct config_errors *errs)
{
	char		*end;
	long long	 n;
	int		 b;
	size_t		 i;
	char		**sp;

	switch (k->type) {
	case CT_BOOL:
		if (parse_bool(v, &b) == -1) {
			config_error(errs, where, "%s: \"%s\" is not a boolean "
			    "(true or false)", fullname, v);
			return (-1);
		}
		*(int *)((char *)base + k->off) = b;
		return (0);
	case CT_INT:
	case CT_DURATION:
		errno = 0;
		if (k->type == CT_DURATION) {
			if (parse_duration(v, &n) == -1) {
				config_error(errs, where, "%s: \"%s\" is not a "
				    "duration (seconds, or a number with s, m, "
				    "h, d or w)", fullname, v);
				return (-1);
			}
		} else {
			n = strtoll(v, &end, 10);
			if (*v == '\0' || *end != '\0' || errno != 0) {
				config_error(errs, where, "%s: \"%s\" is not an "
				    "integer", fullname, v);
				return (-1);
			}
		}
		if (n < k->min || n > k->max) {
			config_error(errs, where, "%s: %lld is out of range "
			    "(%lld to %lld)", fullname, n, k->min, k->max);
			return (-1);
		}
		*(long long *)((char *)base + k->off) = n;
		return (0);
	case CT_ENUM:
		for (i = 0; k->choices[i] != NULL; i++) {
			if (strcasecmp(v, k->choices[i]) == 0) {
				*(int *)((char *)base + k->off) = (int)i;
				return (0);
			}
		}
		config_error(errs, where, "%s: \"%s\" is not one of the "
		    "allowed values", fullname, v);
		return (-1);
	case CT_STRING:
	case CT_SECRET:
	case CT_PATH:
		if (strlen(v) > 8192) {
			config_error(errs, where, "%s: value too long",
			    fullname);
			return (-1);
		}
		sp = (char **)((char *)base + k->off);
		if (*sp != NULL)
			freezero_str(*sp);
		*sp = xstrdup(v);
		return (0);
	case CT_LIST:
	case CT_OBJECT:
		break;
	}
	config_error(errs, where, "%s: internal: cannot store", fullname);
	return (-1);
}

static void
config_store_list(const struct config_key *k, struct cnode *n, void *base,
    const char *fullname, struct config_errors *errs)
{
	struct strlist	*l = (struct strlist *)((char *)base + k->off);
	char		*copy, *p, *item;
	size_t		 i;

	strlist_free(l);
	if (n->kind == CN_SCALAR) {
		if (n->null)
			return;
		if (!n->from_env) {
			strlist_add(l, n->value);
			return;
		}
		/* Environment and -D: comma-separated. */
		copy = p = xstrdup(n->value);
		while ((item = strsep(&p, ",")) != NULL) {
			while (*item == ' ')
				item++;
			if (*item != '\0')
				strlist_add(l, item);
		}
		free(copy);
		return;
	}
	if (n->kind != CN_SEQ) {
		config_error(errs, n->where, "%s: expected a list", fullname);
		return;
	}
	if (n->nkids > 1024) {
		config_error(errs, n->where, "%s: too many items", fullname);
		return;
	}
	for (i = 0; i < n->nkids; i++) {
		if (n->kids[i]->kind != CN_SCALAR || n->kids[i]->null) {
			config_error(errs, n->kids[i]->where, "%s: list items "
			    "must be plain values", fullname);
			continue;
		}
		strlist_add(l, n->kids[i]->value);
	}
}

/* Set every key of a scope to its compiled default. */
static void
config_set_defaults(enum config_scope scope, void *base)
{
	struct config_errors	 errs;
	size_t			 i;
	const struct config_key	*k;
	char			*copy, *p, *item;

	memset(&errs, 0, sizeof errs);
	for (i = 0; i < config_nkeys; i++) {
		k = &config_keys[i];
		if (k->scope != scope || k->def == NULL || k->type == CT_OBJECT)
			continue;
		if (k->type == CT_LIST) {
			struct strlist *l = (struct strlist *)((char *)base +
			    k->off);
			copy = p = xstrdup(k->def);
			while ((item = strsep(&p, ",")) != NULL) {
				if (*item != '\0')
					strlist_add(l, item);
			}
			free(copy);
			continue;
		}
		if (config_store(k, k->def, base, "default", k->name,
		    &errs) == -1)
			fatalx("bad default for %s", k->name);
	}
	config_errors_free(&errs);
}

/* Store a value found in the tree, handling null and *_file secrets. */
static void
config_take(struct config *c, const struct config_key *k, struct cnode *n,
    void *base, const char *fullname, struct config_errors *errs)
{
	char	*cause;

	if (k->type == CT_SECRET) {
		char *fname;

		xasprintf(&fname, "%s_file", fullname);
		if (config_where(c, fname) != NULL)
			config_error(errs, n->where, "%s and %s are both set; "
			    "use one", fullname, fname);
		free(fname);
		xasprintf(&fname, "%s_arn", fullname);
		if (config_where(c, fname) != NULL)
			config_error(errs, n->where, "%s and %s are both set; "
			    "use one", fullname, fname);
		free(fname);
	}
	config_note_origin(c, fullname, n->where);
	if (k->type == CT_LIST) {
		config_store_list(k, n, base, fullname, errs);
		return;
	}
	if (n->kind != CN_SCALAR) {
		config_error(errs, n->where, "%s: expected a single value, not "
		    "a %s", fullname, n->kind == CN_MAP ? "mapping" : "list");
		return;
	}
	if (n->null) {
		/* Explicit null: the key's default, or unset if it has none. */
		if (k->def != NULL) {
			config_store(k, k->def, base, n->where, fullname, errs);
			return;
		}
		if (k->type == CT_STRING || k->type == CT_SECRET ||
		    k->type == CT_PATH) {
			char **sp = (char **)((char *)base + k->off);
			if (*sp != NULL)
				freezero_str(*sp);
			*sp = NULL;
		}
		return;
	}
	if (config_store(k, n->value, base, n->where, fullname, errs) == -1)
		return;
	if ((k->flags & CK_SECRET_PERMS) &&
	    config_check_perms(n->value, &cause) == -1) {
		config_error(errs, n->where, "%s: %s", fullname, cause);
		free(cause);
	}
}

/* Suggest the closest known key, for "unknown key" messages. */
static const char *
config_suggest(const char *name, enum config_scope scope)
{
	size_t		 i, best = SIZE_MAX, d, a, b, la, lb;
	const char	*bestname = NULL, *kn;
	size_t		 prev[128], cur[128];

	la = strlen(name);
	if (la >= 127)
		return (NULL);
	for (i = 0; i < config_nkeys; i++) {
		if (config_keys[i].scope != scope)
			continue;
		kn = config_keys[i].name;
		lb = strlen(kn);
		if (lb >= 127)
			continue;
		for (b = 0; b <= lb; b++)
			prev[b] = b;
		for (a = 1; a <= la; a++) {
			cur[0] = a;
			for (b = 1; b <= lb; b++) {
				d = prev[b - 1] + (name[a - 1] != kn[b - 1]);
				if (prev[b] + 1 < d)
					d = prev[b] + 1;
				if (cur[b - 1] + 1 < d)
					d = cur[b - 1] + 1;
				cur[b] = d;
			}
			memcpy(prev, cur, (lb + 1) * sizeof *prev);
		}
		if (prev[lb] < best) {
			best = prev[lb];
			bestname = kn;
		}
	}
	return (best <= 3 ? bestname : NULL);
}

int
config_name_ok(const char *s)
{
	size_t	len = strlen(s);

	if (len == 0 || len > 32)
		return (0);
	for (; *s != '\0'; s++) {
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) ||
		    *s == '_' || *s == '-'))
			return (0);
	}
	return (1);
}

/* oauth.providers (a map of objects) or a list of objects. */
static void
config_walk_collection(struct config *c, const struct config_collection *col,
    struct cnode *n, struct config_errors *errs)
{
	char	**arr = (char **)((char *)c + col->off_array);
	size_t	 *count = (size_t *)((char *)c + col->off_count);
	size_t	  i;
	char	 *elem, *prefix;

	if (n->kind == CN_SCALAR && n->null)
		return;
	if ((col->is_map && n->kind != CN_MAP) ||
	    (!col->is_map && n->kind != CN_SEQ)) {
		config_error(errs, n->where, "%s: expected a %s", col->name,
		    col->is_map ? "mapping of names" : "list");
		return;
	}
	if (n->nkids > 64) {
		config_error(errs, n->where, "%s: too many entries", col->name);
		return;
	}
	for (i = 0; i < n->nkids; i++) {
		struct cnode *kid = n->kids[i];

		if (col->is_map && !config_name_ok(kid->key)) {
			config_error(errs, kid->where, "%s: name \"%s\" must "
			    "match [a-z0-9_-]{1,32}", col->name, kid->key);
			continue;
		}
		if (kid->kind != CN_MAP) {
			config_error(errs, kid->where, "%s: each entry must be "
			    "a mapping of keys", col->name);
			continue;
		}
		*arr = xreallocarray(*arr, *count + 1, col->elem_size);
		elem = *arr + *count * col->elem_size;
		memset(elem, 0, col->elem_size);
		(*count)++;
		config_set_defaults(col->scope, elem);
		if (col->is_map)
			*(char **)(elem + col->off_name) = xstrdup(kid->key);
		*(char **)(elem + col->off_where) = xstrdup(kid->where);
		if (col->is_map)
			xasprintf(&prefix, "%s.%s", col->name, kid->key);
		else
			xasprintf(&prefix, "%s.%zu", col->name, i);
		config_walk(c, kid, prefix, col->scope, elem, errs);
		free(prefix);
	}
}

/* Stands for a KEY_arn secret not read yet (arn_pending). */
#define CONFIG_ARN_STANDIN	"secret-from-aws-secrets-manager-not-read-yet-" \
				"0123456789abcdef"

/*
 * Is s an ARN of a Secrets Manager secret, with at most a "#key" JSON
 * selector after it? arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME
 */
static int
config_arn_ok(const char *s)
{
	const char	*p, *hash;
	size_t		 i, len = strlen(s);

	if (len > 2048 || !str_is_printable(s, len) || strchr(s, ' ') != NULL)
		return (0);
	if (strncmp(s, "arn:", 4) != 0)
		return (0);
	p = s + 4;
	/* partition:secretsmanager:region:account:secret:name */
	for (i = 0; i < 5; i++) {
		if ((p = strchr(p, ':')) == NULL)
			return (0);
		p++;
	}
	if (strstr(s, ":secretsmanager:") == NULL ||
	    strncmp(p - 7, "secret:", 7) != 0 || *p == '\0' || *p == '#')
		return (0);
	if ((hash = strchr(p, '#')) != NULL && (hash[1] == '\0' ||
	    strchr(hash + 1, '#') != NULL))
		return (0);
	return (1);
}

/*
 * A secret key given as KEY_arn: noted in c->arns, and its value taken
 * from the source's secrets (read from Secrets Manager before this load),
 * or a stand-in while they are being listed (arn_pending).
 */
static void
config_take_arn(struct config *c, const struct config_key *k, struct cnode *n,
    void *base, const char *full, struct config_errors *errs)
{
	const struct config_secret	*sv = NULL;
	struct config_arn		*a;
	char				*stem;
	size_t				 i;

	if (n->kind != CN_SCALAR || n->null || !config_arn_ok(n->value)) {
		config_error(errs, n->where, "%s: expected the ARN of a "
		    "Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:"
		    "secret:NAME, optionally #JSON-KEY)", full);
		return;
	}
	stem = xstrndup(full, strlen(full) - 4);
	if (strcmp(stem, "aws.secret_access_key") == 0 ||
	    strcmp(stem, "aws.session_token") == 0) {
		config_error(errs, n->where, "%s: the credentials that read "
		    "from Secrets Manager cannot come from it", full);
		goto out;
	}
	if (config_where(c, stem) != NULL) {
		config_error(errs, n->where, "%s (or %s_file) and %s are both "
		    "set; use one", stem, stem, full);
		goto out;
	}
	for (i = 0; config_src != NULL && i < config_src->nsecrets; i++) {
		if (strcmp(config_src->secrets[i].name, stem) == 0 &&
		    strcmp(config_src->secrets[i].arn, n->value) == 0) {
			sv = &config_src->secrets[i];
			break;
		}
	}
	if (sv == NULL && (config_src == NULL || !config_src->arn_pending)) {
		config_error(errs, n->where, "%s: secret %s was not read", full,
		    n->value);
		goto out;
	}
	if (c->narns >= 256) {
		config_error(errs, n->where, "%s: too many *_arn keys", full);
		goto out;
	}
	c->arns = xreallocarray(c->arns, c->narns + 1, sizeof *c->arns);
	a = &c->arns[c->narns++];
	a->name = xstrdup(stem);
	a->arn = xstrdup(n->value);
	a->where = xstrdup(n->where);
	/* Not the key itself: the file holds no secret for it. */
	config_note_origin(c, full, n->where);
	config_store(k, sv != NULL ? sv->value : CONFIG_ARN_STANDIN, base,
	    n->where, full, errs);
out:
	free(stem);
}

/*
 * Walk a mapping: dotted names are matched against the keyword table of the
 * scope. "shown" is the name prefix used in messages (with the collection's
 * element name), "name" the table name being built.
 */
static void
config_walk_map(struct config *c, struct cnode *map, const char *shown,
    const char *tname, enum config_scope scope, void *base,
    struct config_errors *errs)
{
	size_t				 i, len;
	struct cnode			*kid;
	char				*name, *full, *stem, *secret, *cause;
	const struct config_key		*k;
	const struct config_collection	*col;
	const char			*sugg;

	for (i = 0; i < map->nkids; i++) {
		kid = map->kids[i];
		if (tname != NULL)
			xasprintf(&name, "%s.%s", tname, kid->key);
		else
			name = xstrdup(kid->key);
		if (shown != NULL)
			xasprintf(&full, "%s.%s", shown, kid->key);
		else
			full = xstrdup(kid->key);

		if (scope == CS_ROOT &&
		    (col = config_collection_find(name)) != NULL) {
			config_note_origin(c, full, kid->where);
			config_walk_collection(c, col, kid, errs);
			goto next;
		}
		if ((k = config_key_find(name, scope)) != NULL &&
		    k->type != CT_OBJECT) {
			config_take(c, k, kid, base, full, errs);
			goto next;
		}
		if (config_prefix_exists(name, scope)) {
			if (kid->kind == CN_MAP)
				config_walk_map(c, kid, full, name, scope, base,
				    errs);
			else if (!(kid->kind == CN_SCALAR && kid->null))
				config_error(errs, kid->where, "%s: expected a "
				    "mapping of keys", full);
			goto next;
		}
		/* key_file for a secret key: read the secret from a file. */
		len = strlen(name);
		if (len > 5 && strcmp(name + len - 5, "_file") == 0) {
			stem = xstrndup(name, len - 5);
			k = config_key_find(stem, scope);
			free(stem);
			if (k != NULL && k->type == CT_SECRET) {
				if (kid->kind != CN_SCALAR || kid->null) {
					config_error(errs, kid->where, "%s: "
					    "expected a file name", full);
					goto next;
				}
				if (config_read_secret_file(kid->value, &secret,
				    &cause) == -1) {
					config_error(errs, kid->where, "%s: %s",
					    full, cause);
					free(cause);
					goto next;
				}
				stem = xstrndup(full, strlen(full) - 5);
				if (config_where(c, stem) != NULL)
					config_error(errs, kid->where, "%s and "
					    "%s are both set; use one", stem,
					    full);
				xasprintf(&cause, "%s_arn", stem);
				if (config_where(c, cause) != NULL)
					config_error(errs, kid->where, "%s and "
					    "%s are both set; use one", cause,
					    full);
				free(cause);
				config_note_origin(c, stem, kid->where);
				config_note_origin(c, full, kid->where);
				free(stem);
				config_store(k, secret, base, kid->where, full,
				    errs);
				freezero_str(secret);
				goto next;
			}
		}
		/* key_arn for a secret key: read it from Secrets Manager. */
		if (len > 4 && strcmp(name + len - 4, "_arn") == 0) {
			stem = xstrndup(name, len - 4);
			k = config_key_find(stem, scope);
			free(stem);
			if (k != NULL && k->type == CT_SECRET) {
				config_take_arn(c, k, kid, base, full, errs);
				goto next;
			}
		}
		sugg = config_suggest(name, scope);
		if (sugg != NULL && scope != CS_ROOT)
			config_error(errs, kid->where, "unknown key \"%s\" (did "
			    "you mean \"%s\"?)", full,
			    sugg + strlen(config_scope_prefix(scope)) + 1);
		else if (sugg != NULL)
			config_error(errs, kid->where, "unknown key \"%s\" (did "
			    "you mean \"%s\"?)", full, sugg);
		else
			config_error(errs, kid->where, "unknown key \"%s\"",
			    full);
next:
		free(name);
		free(full);
	}
}

static void
config_walk(struct config *c, struct cnode *map, const char *shown,
    enum config_scope scope, void *base, struct config_errors *errs)
{
	char	*tname = NULL;

	if (scope != CS_ROOT)
		tname = xstrdup(config_scope_prefix(scope));
	config_walk_map(c, map, shown, tname, scope, base, errs);
	free(tname);
}

/* Walk the tree and note secrets given inline in the file itself. */
static void
config_inline_secrets(const struct config *c, const char *file,
    char **first)
{
	size_t			 i;
	const struct config_key	*k;

	*first = NULL;
	for (i = 0; i < c->norigins; i++) {
		size_t flen = strlen(file);
		const char *w = c->origins[i].where;
		const char *name = c->origins[i].name;

		if (strncmp(w, file, flen) != 0 || w[flen] != ':')
			continue;
		k = config_key_find(name, CS_ROOT);
		if (k == NULL) {
			/* A collection member: check its last component. */
			const char *dot = strrchr(name, '.');
			size_t j;

			if (dot == NULL)
				continue;
			for (j = 0; j < config_nkeys; j++) {
				const char *kd = strrchr(config_keys[j].name,
				    '.');
				if (config_keys[j].scope != CS_ROOT &&
				    config_keys[j].type == CT_SECRET &&
				    kd != NULL && strcmp(kd, dot) == 0) {
					*first = xstrdup(name);
					return;
				}
			}
			continue;
		}
		if (k->type == CT_SECRET) {
			*first = xstrdup(name);
			return;
		}
	}
}

/*
 * Build a configuration from all layers. Returns NULL with errs filled if
 * anything is wrong.
 */
struct config *
config_load(const struct config_source *src, struct config_errors *errs)
{
	struct config	*c;
	struct cnode	*root = NULL;
	char		**e, *eq, *name, *path, *where, *secret;
	size_t		 i;
	struct stat	 st;

	if (src->check == NULL)
		fatalx("%s: no module checks", __func__);
	memset(errs, 0, sizeof *errs);
	c = xcalloc(1, sizeof *c);
	c->refcnt = 1;
	config_set_defaults(CS_ROOT, c);

	if (src->path != NULL) {
		if (!src->path_explicit && stat(src->path, &st) == -1 &&
		    errno == ENOENT) {
			/* No file at the default place: built-in defaults. */
			root = cnode_new(CN_MAP, NULL, "defaults");
		} else if (config_parse_file(src->path, &root, errs) == 0) {
			c->path = xstrdup(src->path);
			if (stat(src->path, &st) == 0)
				c->file_mode = (int)(st.st_mode & 07777);
		}
	}
	if (root == NULL)
		root = cnode_new(CN_MAP, NULL, "defaults");

	for (e = src->environ; e != NULL && *e != NULL; e++) {
		/* The AWS SDKs' region variables, AWS_REGION first. */
		if (strncmp(*e, "AWS_REGION=", 11) == 0 && (*e)[11] != '\0') {
			free(c->aws_region_env);
			c->aws_region_env = xstrdup(*e + 11);
		} else if (strncmp(*e, "AWS_DEFAULT_REGION=", 19) == 0 &&
		    (*e)[19] != '\0' && c->aws_region_env == NULL)
			c->aws_region_env = xstrdup(*e + 19);
		if (strncmp(*e, "BEDROCK_", 8) != 0)
			continue;
		if ((eq = strchr(*e, '=')) == NULL)
			continue;
		name = xstrndup(*e, (size_t)(eq - *e));
		path = config_env_path(name + 8);
		xasprintf(&where, "environment %s", name);
		config_set_path(root, path, eq + 1, where, errs);
		free(where);
		free(path);
		free(name);
	}
	for (i = 0; i < src->ndefines; i++) {
		xasprintf(&where, "-D %s", src->defines[i].key);
		config_set_path(root, src->defines[i].key,
		    src->defines[i].value, where, errs);
		free(where);
	}

	config_src = src;
	config_walk(c, root, NULL, CS_ROOT, c, errs);
	config_src = NULL;
	cnode_free(root);

	/* Secrets written into a file others can read are refused. */
	if (c->path != NULL && (c->file_mode & 077) != 0) {
		config_inline_secrets(c, c->path, &secret);
		if (secret != NULL) {
			config_error(errs, c->path, "the file holds a secret "
			    "(%s) but is readable by group or others (mode "
			    "%04o); chmod 600 it, or use a *_file key", secret,
			    (unsigned)c->file_mode);
			free(secret);
		}
	}

	if (errs->n == 0) {
		config_finish(c, errs);
		/* What the modules that own part of it check. */
		src->check(c, errs);
	}
	if (errs->n != 0) {
		config_unref(c);
		return (NULL);
	}
	return (c);
}

struct config *
config_ref(struct config *c)
{
	c->refcnt++;
	return (c);
}

static void
config_free_values(enum config_scope scope, void *base)
{
	size_t			 i;
	const struct config_key	*k;

	for (i = 0; i < config_nkeys; i++) {
		k = &config_keys[i];
		if (k->scope != scope)
			continue;
		switch (k->type) {
		case CT_STRING:
		case CT_PATH:
		case CT_SECRET: {
			char **sp = (char **)((char *)base + k->off);
			if (*sp != NULL)
				freezero_str(*sp);
			*sp = NULL;
			break;
		}
		case CT_LIST:
			strlist_free((struct strlist *)((char *)base + k->off));
			break;
		default:
			break;
		}
	}
}

static void
config_free_scope(enum config_scope scope, void *base)
{
	config_free_values(scope, base);
}

void
config_unref(struct config *c)
{
	size_t				 i, j;
	const struct config_collection	*col;
	char				*arr, *elem;
	size_t				 count;

	if (c == NULL || --c->refcnt > 0)
		return;
	config_finish_free(c);
	for (i = 0; i < config_ncollections; i++) {
		col = &config_collections[i];
		arr = *(char **)((char *)c + col->off_array);
		count = *(size_t *)((char *)c + col->off_count);
		for (j = 0; j < count; j++) {
			elem = arr + j * col->elem_size;
			config_free_scope(col->scope, elem);
			if (col->is_map)
				free(*(char **)(elem + col->off_name));
			free(*(char **)(elem + col->off_where));
		}
		free(arr);
	}
	config_free_scope(CS_ROOT, c);
	for (i = 0; i < c->norigins; i++) {
		free(c->origins[i].name);
		free(c->origins[i].where);
	}
	free(c->origins);
	for (i = 0; i < c->narns; i++) {
		free(c->arns[i].name);
		free(c->arns[i].arn);
		free(c->arns[i].where);
	}
	free(c->arns);
	free(c->path);
	free(c);
}

static void
config_print_value(const struct config_key *k, const void *base,
    const char *name, FILE *f)
{
	const char		*s;
	const struct strlist	*l;
	size_t			 i;

	switch (k->type) {
	case CT_BOOL:
		fprintf(f, "%s: %s\n", name,
		    *(const int *)((const char *)base + k->off) ? "true" :
		    "false");
		break;
	case CT_INT:
	case CT_DURATION:
		fprintf(f, "%s: %lld\n", name,
		    *(const long long *)((const char *)base + k->off));
		break;
	case CT_ENUM:
		fprintf(f, "%s: %s\n", name, k->choices[
		    *(const int *)((const char *)base + k->off)]);
		break;
	case CT_SECRET:
		s = *(char *const *)((const char *)base + k->off);
		fprintf(f, "%s: %s\n", name, s == NULL ? "~" :
		    "\"********\"");
		break;
	case CT_STRING:
	case CT_PATH:
		s = *(char *const *)((const char *)base + k->off);
		if (s == NULL)
			fprintf(f, "%s: ~\n", name);
		else {
			char esc[1024];
			log_escape(s, strlen(s), esc, sizeof esc);
			fprintf(f, "%s: \"%s\"\n", name, esc);
		}
		break;
	case CT_LIST:
		l = (const struct strlist *)((const char *)base + k->off);
		fprintf(f, "%s: [", name);
		for (i = 0; i < l->n; i++) {
			char esc[1024];
			log_escape(l->v[i], strlen(l->v[i]), esc, sizeof esc);
			fprintf(f, "%s\"%s\"", i == 0 ? "" : ", ", esc);
		}
		fprintf(f, "]\n");
		break;
	case CT_OBJECT:
		break;
	}
}

/* Print the effective configuration, secrets masked (for -nv). */
void
config_print(const struct config *c, FILE *f)
{
	size_t				 i, j, m;
	const struct config_collection	*col;
	const char			*arr, *elem;
	size_t				 count, plen;
	char				*name;

	fprintf(f, "# effective configuration%s%s\n",
	    c->path != NULL ? " from " : " (built-in defaults)",
	    c->path != NULL ? c->path : "");
	for (i = 0; i < config_nkeys; i++) {
		if (config_keys[i].scope != CS_ROOT ||
		    (config_keys[i].flags & CK_HIDDEN))
			continue;
		config_print_value(&config_keys[i], c, config_keys[i].name, f);
	}
	for (i = 0; i < config_ncollections; i++) {
		col = &config_collections[i];
		arr = *(char *const *)((const char *)c + col->off_array);
		count = *(const size_t *)((const char *)c + col->off_count);
		plen = strlen(col->name);
		for (j = 0; j < count; j++) {
			elem = arr + j * col->elem_size;
			for (m = 0; m < config_nkeys; m++) {
				if (config_keys[m].scope != col->scope)
					continue;
				if (col->is_map)
					xasprintf(&name, "%s.%s%s", col->name,
					    *(char *const *)(elem +
					    col->off_name),
					    config_keys[m].name + plen + 2);
				else
					xasprintf(&name, "%s.%zu%s", col->name,
					    j, config_keys[m].name + plen + 2);
				config_print_value(&config_keys[m], elem, name,
				    f);
				free(name);
			}
		}
	}
}

/*
 * Checks that need more than one key, and values derived from the keys:
 * listeners, the public URL, address lists, the database path.
 */
static void
config_finish(struct config *c, struct config_errors *errs)
{
	char		*host, *port, *cause, *p;
	const char	*w;
	size_t		 i, len;
	char		 portbuf[16];
	int		 tls;

	tls = c->server_tls_cert_file != NULL || c->server_tls_key_file != NULL;
	if (tls && (c->server_tls_cert_file == NULL ||
	    c->server_tls_key_file == NULL)) {
		w = config_where(c, c->server_tls_cert_file != NULL ?
		    "server.tls.cert_file" : "server.tls.key_file");
		config_error(errs, w, "server.tls.cert_file and "
		    "server.tls.key_file must be set together");
	}
	if (c->server_tls_cert_file != NULL &&
	    access(c->server_tls_cert_file, R_OK) == -1)
		config_error(errs, config_where(c, "server.tls.cert_file"),
		    "server.tls.cert_file: cannot read %s: %s",
		    c->server_tls_cert_file, strerror(errno));

	/* Listeners. */
	if (c->server_listen.n == 0) {
		c->listen = xcalloc(1, sizeof *c->listen);
		c->listen[0].host = xstrdup(c->server_host);
		snprintf(portbuf, sizeof portbuf, "%lld", c->server_port);
		c->listen[0].port = xstrdup(portbuf);
		c->nlisten = 1;
	} else {
		c->listen = xcalloc(c->server_listen.n, sizeof *c->listen);
		for (i = 0; i < c->server_listen.n; i++) {
			if (hostport_split(c->server_listen.v[i], &host,
			    &port) == -1) {
				config_error(errs, config_where(c,
				    "server.listen"), "server.listen: \"%s\" is "
				    "not host:port (IPv6 as [addr]:port)",
				    c->server_listen.v[i]);
				continue;
			}
			c->listen[c->nlisten].host = host;
			c->listen[c->nlisten].port = port;
			c->nlisten++;
		}
	}

	/* The public URL: given, or made from the first listener. */
	if (c->server_public_url == NULL) {
		const char *h;

		h = c->nlisten > 0 ? c->listen[0].host : c->server_host;
		if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 ||
		    *h == '\0')
			h = "127.0.0.1";
		xasprintf(&c->server_public_url, "%s://%s%s%s:%s",
		    tls ? "https" : "http", strchr(h, ':') ? "[" : "", h,
		    strchr(h, ':') ? "]" : "",
		    c->nlisten > 0 ? c->listen[0].port : "0");
	} else {
		p = c->server_public_url;
		if (strncmp(p, "https://", 8) != 0 &&
		    strncmp(p, "http://", 7) != 0)
			config_error(errs, config_where(c, "server.public_url"),
			    "server.public_url: \"%s\" must start with "
			    "http:// or https://", p);
		else if (strpbrk(p, "?#@ \t\"<>\\") != NULL ||
		    !str_is_printable(p, strlen(p)))
			config_error(errs, config_where(c, "server.public_url"),
			    "server.public_url: must be scheme://host[:port]"
			    "[/path] without query, fragment or user "
			    "information");
		len = strlen(p);
		while (len > 0 && p[len - 1] == '/')
			p[--len] = '\0';
	}
	c->public_https = strncmp(c->server_public_url, "https://", 8) == 0;

	if (cidrlist_parse(&c->server_trusted_proxies, &c->trusted_proxies,
	    &cause) == -1) {
		config_error(errs, config_where(c, "server.trusted_proxies"),
		    "server.trusted_proxies: %s", cause);
		free(cause);
	}
	if (cidrlist_parse(&c->metrics_allow, &c->metrics_acl, &cause) == -1) {
		config_error(errs, config_where(c, "metrics.allow"),
		    "metrics.allow: %s", cause);
		free(cause);
	}
	if (c->metrics_path[0] != '/' || strpbrk(c->metrics_path, "?# ") !=
	    NULL || !str_is_printable(c->metrics_path,
	    strlen(c->metrics_path)))
		config_error(errs, config_where(c, "metrics.path"),
		    "metrics.path: must be an absolute path like /metrics");

	config_check_table(c, errs);
}

static void
config_finish_free(struct config *c)
{
	size_t	i;

	for (i = 0; i < c->nlisten; i++) {
		free(c->listen[i].host);
		free(c->listen[i].port);
	}
	free(c->listen);
	cidrlist_free(&c->trusted_proxies);
	cidrlist_free(&c->metrics_acl);
	free(c->db_path);
	config_free_table(c);
}

/* Record an error found by a module's check of a loaded configuration. */
void
config_add_error(struct config_errors *errs, const struct config *c,
    const char *key, const char *fmt, ...)
{
	va_list		 ap;
	char		*msg;
	const char	*where;
	size_t		 i, len = strlen(key);

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	/* A key, else the first key set inside it (a provider's block). */
	if ((where = config_where(c, key)) == NULL) {
		for (i = 0; i < c->norigins; i++) {
			if (strncmp(c->origins[i].name, key, len) == 0 &&
			    c->origins[i].name[len] == '.') {
				where = c->origins[i].where;
				break;
			}
		}
	}
	if (where == NULL)
		where = c->path != NULL ? c->path : "configuration";
	config_error(errs, where, "%s", msg);
	free(msg);
}
