/*
 * client-token.c: "token", "status" and "aws-credentials" on the laptop.
 *
 * token prints a valid access token and nothing else on stdout: fit to be
 * Claude Code's apiKeyHelper. A token within its refresh margin (five
 * minutes, at most half its life) is refreshed first; one the proxy
 * refuses (GET /auth/validate: 401) is refreshed once; a session the
 * proxy has ended is a message on stderr and exit 3. When the proxy
 * cannot be asked, a token that has not expired here is printed anyway.
 */

#include <sys/types.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "bsp.h"
#include "client.h"
#include "web.h"

enum {
	TOPT_PROFILE = 1,
	TOPT_ROLE,
	TOPT_FORMAT,
};

/* Parse [--profile NAME] and the options allowed (TOPT_*). */
static int
token_parse(int argc, char **argv, const char *allowed, struct client_opts *o,
    const char **role, const char **format)
{
	static const struct option	opts[] = {
		{ "profile", required_argument, NULL, TOPT_PROFILE },
		{ "role", required_argument, NULL, TOPT_ROLE },
		{ "format", required_argument, NULL, TOPT_FORMAT },
		{ NULL, 0, NULL, 0 },
	};
	int				ch;

	o->profile = CLIENT_PROFILE_DEFAULT;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (ch == '?' || strchr(allowed, ch) == NULL)
			return (-1);
		switch (ch) {
		case TOPT_PROFILE:
			o->profile = optarg;
			break;
		case TOPT_ROLE:
			*role = optarg;
			break;
		case TOPT_FORMAT:
			*format = optarg;
			break;
		}
	}
	return (argc == optind ? 0 : -1);
}

/*
 * Make s hold an access token the proxy takes: refreshed when due, and
 * with check, asked of the proxy (refreshed once if refused). Returns a
 * CLIENT_EXIT_* status; messages on stderr. *validated (if not NULL)
 * receives the /auth/validate answer's JSON when it was asked.
 */
static int
token_ready(struct client_session *s, struct hc_target *t, int check,
    json_t **validated)
{
	struct client_answer	 a;
	char			*why = NULL;
	int			 rc, refreshed = 0;

	if (validated != NULL)
		*validated = NULL;
	if (!client_token_fresh(s, now_wall())) {
		rc = client_refresh_wait(s, 0, &why);
		if (rc == CLIENT_EXIT_PROXY && s->access_token != NULL &&
		    s->expires_at > now_wall()) {
			/* Not expired yet: better than nothing. */
			log_warnx("%s; the current token is used until it "
			    "expires", why);
			free(why);
			return (CLIENT_EXIT_OK);
		}
		if (rc != CLIENT_EXIT_OK)
			goto fail;
		refreshed = 1;
	}
	if (!check)
		return (CLIENT_EXIT_OK);
	for (;;) {
		if (client_call(t, "GET", "/auth/validate", s->access_token,
		    NULL, NULL, 0, &a) == -1)
			return (CLIENT_EXIT_LOCAL);
		if (a.error == HC_OK && a.status == 200) {
			if (validated != NULL)
				*validated = json_incref(a.json);
			client_answer_clear(&a);
			return (CLIENT_EXIT_OK);
		}
		if (a.error != HC_OK || a.status != 401 || refreshed) {
			rc = client_answer_exit(&a, "GET /auth/validate",
			    s->proxy, &why);
			client_answer_clear(&a);
			if (rc == CLIENT_EXIT_SIGNIN)
				goto fail;
			/* The proxy cannot say: keep what we have. */
			log_warnx("%s", why);
			free(why);
			return (s->expires_at > now_wall() ? CLIENT_EXIT_OK :
			    CLIENT_EXIT_PROXY);
		}
		client_answer_clear(&a);
		/* Refused (revoked key, clock, ...): one forced refresh. */
		if ((rc = client_refresh_wait(s, 1, &why)) != CLIENT_EXIT_OK)
			goto fail;
		refreshed = 1;
	}
fail:
	if (rc == CLIENT_EXIT_SIGNIN)
		client_signin_hint(s, why != NULL ? why : "the proxy refuses "
		    "this session");
	else
		fprintf(stderr, "%s: %s\n", BSP_NAME, why != NULL ? why :
		    "cannot get a token");
	free(why);
	return (rc);
}

/* Load the profile, start the loop; CLIENT_EXIT_* with messages. */
static int
token_open(const struct client_opts *o, struct client_session *s,
    struct hc_target **t)
{
	char	*cause = NULL;
	int	 rc;

	*t = NULL;
	if ((rc = client_session_load(o, s)) != CLIENT_EXIT_OK)
		return (rc);
	if (client_loop_init(s, &cause) == -1 ||
	    (*t = client_target(s, &cause)) == NULL) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		client_loop_free();
		return (CLIENT_EXIT_LOCAL);
	}
	return (CLIENT_EXIT_OK);
}

static void
token_close(struct client_session *s, struct hc_target *t)
{
	if (t != NULL)
		hc_target_free(t);
	client_loop_free();
	client_session_clear(s);
}

/* token [--profile P] */
int
client_cmd_token(int argc, char **argv)
{
	static const char	 allowed[] = { TOPT_PROFILE, 0 };
	struct client_opts	 o;
	struct client_session	 s;
	struct hc_target	*t;
	int			 rc;

	if (token_parse(argc, argv, allowed, &o, NULL, NULL) == -1) {
		fprintf(stderr, "usage: %s token [--profile NAME]\n", BSP_NAME);
		return (CLIENT_EXIT_USAGE);
	}
	memset(&s, 0, sizeof s);
	if ((rc = token_open(&o, &s, &t)) != CLIENT_EXIT_OK) {
		client_session_clear(&s);
		return (rc);
	}
	if ((rc = token_ready(&s, t, 1, NULL)) == CLIENT_EXIT_OK) {
		printf("%s\n", s.access_token);
		if (fflush(stdout) == EOF || ferror(stdout))
			rc = CLIENT_EXIT_LOCAL;
	}
	token_close(&s, t);
	return (rc);
}

/* "in 5 min" and the like, for status. */
static void
token_when(time_t at, char *buf, size_t len)
{
	char	iso[32], d[64];

	time_iso8601(at, iso, sizeof iso);
	web_human_delta((long long)(at - now_wall()), d, sizeof d);
	snprintf(buf, len, "%s (%s)", iso, d);
}

/* One "label: value" line of status; the value escaped. */
static void
token_line(const char *label, const char *value)
{
	char	*e = client_escape(value != NULL ? value : "-");

	printf("%-14s %s\n", label, e);
	free(e);
}

/* A string member of o, or "-". */
static const char *
token_str(json_t *o, const char *k)
{
	const char	*v = json_string_value(json_object_get(o, k));

	return (v != NULL ? v : "-");
}

/*
 * The usage and budget lines of status, from GET /auth/me: this window's
 * cost and calls, then each budget with what is spent and left.
 */
static void
token_usage(json_t *me)
{
	json_t	*u = json_object_get(me, "usage"), *tk, *b, *caps;
	size_t	 i;
	char	*txt;

	tk = json_object_get(u, "tokens");
	xasprintf(&txt, "$%s this %s (since %s, %s); calls %lld; tokens %lld "
	    "in, %lld out, %lld cache read, %lld cache write", token_str(u, "cost_usd"), token_str(u, "window"),
	    token_str(u, "since"), token_str(u, "time_zone"),
	    (long long)json_integer_value(json_object_get(u, "requests")),
	    (long long)json_integer_value(json_object_get(tk, "input")),
	    (long long)json_integer_value(json_object_get(tk, "output")),
	    (long long)json_integer_value(json_object_get(tk, "cache_read")),
	    (long long)(json_integer_value(json_object_get(tk,
	    "cache_write")) + json_integer_value(json_object_get(tk,
	    "cache_write_1h"))));
	token_line("usage:", txt);
	free(txt);
	caps = json_object_get(me, "budgets");
	for (i = 0; i < json_array_size(caps); i++) {
		b = json_array_get(caps, i);
		if (json_is_string(json_object_get(b, "limit_usd")))
			xasprintf(&txt, "%s (%s, %s): $%s of $%s spent, $%s "
			    "left, resets %s [%s]", token_str(b, "name"),
			    token_str(b, "scope"), token_str(b, "window"),
			    token_str(b, "spent_usd"), token_str(b,
			    "limit_usd"), token_str(b, "remaining_usd"),
			    token_str(b, "resets_at"), token_str(b, "state"));
		else
			xasprintf(&txt, "%s (%s, %s): $%s spent, resets %s "
			    "[%s]", token_str(b, "name"), token_str(b,
			    "scope"), token_str(b, "window"), token_str(b,
			    "spent_usd"), token_str(b, "resets_at"),
			    token_str(b, "state"));
		token_line(i == 0 ? "budgets:" : "", txt);
		free(txt);
	}
}

/* status [--profile P] */
int
client_cmd_status(int argc, char **argv)
{
	static const char	 allowed[] = { TOPT_PROFILE, 0 };
	struct client_opts	 o;
	struct client_session	 s;
	struct client_answer	 a;
	struct hc_target	*t;
	struct strlist		 ids = { NULL, 0 };
	json_t			*v = NULL, *m;
	size_t			 i;
	char			 buf[128], *txt, *why = NULL;
	const char		*id;
	int			 rc;

	if (token_parse(argc, argv, allowed, &o, NULL, NULL) == -1) {
		fprintf(stderr, "usage: %s status [--profile NAME]\n",
		    BSP_NAME);
		return (CLIENT_EXIT_USAGE);
	}
	memset(&s, 0, sizeof s);
	if ((rc = token_open(&o, &s, &t)) != CLIENT_EXIT_OK) {
		client_session_clear(&s);
		return (rc);
	}
	token_line("profile:", s.profile);
	token_line("proxy:", s.proxy);
	token_line("session file:", s.path);
	if (s.signed_in_at != 0) {
		time_iso8601(s.signed_in_at, buf, sizeof buf);
		xasprintf(&txt, "%s, %s sign-in", buf, s.flow != NULL ?
		    s.flow : "browser");
		token_line("signed in:", txt);
		free(txt);
	}
	fflush(stdout);
	if ((rc = token_ready(&s, t, 1, &v)) != CLIENT_EXIT_OK) {
		token_close(&s, t);
		return (rc);
	}
	if (v == NULL) {
		/* The proxy could not be asked (warned above). */
		token_line("user:", s.email != NULL ? s.email : s.sub);
		token_line("proxy state:", "cannot be reached; what is shown "
		    "is what this machine knows");
		token_close(&s, t);
		return (CLIENT_EXIT_PROXY);
	}
	xasprintf(&txt, "%s (%s, provider %s)",
	    json_string_value(json_object_get(v, "email")) != NULL ?
	    json_string_value(json_object_get(v, "email")) : "-",
	    json_string_value(json_object_get(v, "sub")) != NULL ?
	    json_string_value(json_object_get(v, "sub")) : "-",
	    json_string_value(json_object_get(v, "provider")) != NULL ?
	    json_string_value(json_object_get(v, "provider")) : "-");
	token_line("user:", txt);
	free(txt);
	token_when(s.expires_at, buf, sizeof buf);
	xasprintf(&txt, "expires %s; refreshed by itself", buf);
	token_line("access token:", txt);
	free(txt);
	m = json_object_get(v, "scopes");
	for (i = 0; i < json_array_size(m); i++)
		if ((id = json_string_value(json_array_get(m, i))) != NULL)
			strlist_add(&ids, id);
	txt = strlist_join(&ids, ", ");
	token_line("scopes:", txt);
	free(txt);
	strlist_free(&ids);
	json_decref(v);

	/* The models this user may call, as the proxy lists them. */
	if (client_call(t, "GET", "/v1/models?limit=1000", s.access_token,
	    NULL, NULL, 0, &a) == 0) {
		if (a.error == HC_OK && a.status == 200) {
			m = json_object_get(a.json, "data");
			for (i = 0; i < json_array_size(m); i++)
				if ((id = json_string_value(json_object_get(
				    json_array_get(m, i), "id"))) != NULL)
					strlist_add(&ids, id);
			txt = strlist_join(&ids, ", ");
			token_line("models:", ids.n > 0 ? txt : "none");
			free(txt);
			strlist_free(&ids);
		} else {
			(void)client_answer_exit(&a, "GET /v1/models", s.proxy,
			    &why);
			token_line("models:", why);
			free(why);
			why = NULL;
		}
		client_answer_clear(&a);
	}
	/* Usage and budgets, where the proxy reports them (GET /auth/me). */
	if (client_call(t, "GET", "/auth/me", s.access_token, NULL, NULL, 0,
	    &a) == 0) {
		if (a.error == HC_OK && a.status == 200 && json_is_object(
		    json_object_get(a.json, "usage")))
			token_usage(a.json);
		else if (a.error == HC_OK && a.status == 404)
			token_line("usage:", "not reported by this proxy (it "
			    "has no GET /auth/me); the models above are what "
			    "/v1/models lists, the user what /auth/validate "
			    "says");
		else {
			(void)client_answer_exit(&a, "GET /auth/me", s.proxy,
			    &why);
			token_line("usage:", why);
			free(why);
		}
		client_answer_clear(&a);
	}
	token_close(&s, t);
	return (CLIENT_EXIT_OK);
}

/* The credentials in either shape, flat or under "Credentials". */
static int
token_aws_fields(json_t *j, const char **k, const char **sk, const char **st,
    const char **ex)
{
	json_t	*c = json_object_get(j, "Credentials");

	if (json_is_object(c))
		j = c;
	*k = json_string_value(json_object_get(j, "AccessKeyId"));
	*sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	*st = json_string_value(json_object_get(j, "SessionToken"));
	*ex = json_string_value(json_object_get(j, "Expiration"));
	if (*k == NULL || *sk == NULL || **k == '\0' || **sk == '\0' ||
	    strlen(*k) > 128 || strlen(*sk) > 256 || (*st != NULL &&
	    strlen(*st) > 8192) || (*ex != NULL && strlen(*ex) > 64))
		return (-1);
	return (0);
}

/* aws-credentials [--profile P] [--role NAME] [--format process|sts] */
int
client_cmd_aws_credentials(int argc, char **argv)
{
	static const char	 allowed[] = { TOPT_PROFILE, TOPT_ROLE,
				    TOPT_FORMAT, 0 };
	struct client_opts	 o;
	struct client_session	 s;
	struct client_answer	 a;
	struct hc_target	*t;
	const char		*role = NULL, *format = "process";
	const char		*k, *sk, *st, *ex;
	json_t			*out;
	char			*body, *why = NULL, *text;
	int			 rc, tries;

	if (token_parse(argc, argv, allowed, &o, &role, &format) == -1 ||
	    (strcmp(format, "process") != 0 && strcmp(format, "sts") != 0) ||
	    (role != NULL && (*role == '\0' || strlen(role) > 128))) {
		fprintf(stderr, "usage: %s aws-credentials [--profile NAME] "
		    "[--role NAME] [--format process|sts]\n", BSP_NAME);
		return (CLIENT_EXIT_USAGE);
	}
	memset(&s, 0, sizeof s);
	if ((rc = token_open(&o, &s, &t)) != CLIENT_EXIT_OK) {
		client_session_clear(&s);
		return (rc);
	}
	if ((rc = token_ready(&s, t, 0, NULL)) != CLIENT_EXIT_OK) {
		token_close(&s, t);
		return (rc);
	}
	body = client_json_text(role != NULL ? json_pack("{s:s}", "role",
	    role) : json_object());
	for (tries = 0;; tries++) {
		if (client_call(t, "POST", "/aws/credentials", s.access_token,
		    "application/json", body, strlen(body), &a) == -1) {
			rc = CLIENT_EXIT_LOCAL;
			break;
		}
		if (a.error == HC_OK && a.status == 401 && tries == 0) {
			client_answer_clear(&a);
			rc = client_refresh_wait(&s, 1, &why);
			if (rc == CLIENT_EXIT_OK)
				continue;
			if (rc == CLIENT_EXIT_SIGNIN)
				client_signin_hint(&s, why);
			else
				fprintf(stderr, "%s: %s\n", BSP_NAME, why);
			free(why);
			break;
		}
		if (a.error == HC_OK && a.status == 200 && token_aws_fields(
		    a.json, &k, &sk, &st, &ex) == 0) {
			if (strcmp(format, "sts") == 0)
				out = json_pack("{s:{s:s,s:s,s:s*,s:s*}}",
				    "Credentials", "AccessKeyId", k,
				    "SecretAccessKey", sk, "SessionToken", st,
				    "Expiration", ex);
			else
				out = json_pack("{s:i,s:s,s:s,s:s*,s:s*}",
				    "Version", 1, "AccessKeyId", k,
				    "SecretAccessKey", sk, "SessionToken", st,
				    "Expiration", ex);
			if (out == NULL)
				fatalx("%s: json_pack", __func__);
			text = json_dumps(out, JSON_COMPACT |
			    JSON_PRESERVE_ORDER);
			json_decref(out);
			printf("%s\n", text);
			freezero_str(text);
			rc = fflush(stdout) == EOF ? CLIENT_EXIT_LOCAL :
			    CLIENT_EXIT_OK;
			client_answer_clear(&a);
			break;
		}
		if (a.error == HC_OK && a.status == 200) {
			fprintf(stderr, "%s: the proxy at %s answered "
			    "/aws/credentials without AccessKeyId and "
			    "SecretAccessKey\n", BSP_NAME, s.proxy);
			rc = CLIENT_EXIT_PROXY;
		} else if (a.error == HC_OK && a.status == 404) {
			fprintf(stderr, "%s: the proxy at %s does not vend AWS "
			    "credentials (POST /aws/credentials: 404); ask its "
			    "operator, or let %s relay sign your AWS tools' "
			    "requests instead\n", BSP_NAME, s.proxy, BSP_NAME);
			rc = CLIENT_EXIT_ABSENT;
		} else {
			rc = client_answer_exit(&a, "POST /aws/credentials",
			    s.proxy, &why);
			if (rc == CLIENT_EXIT_SIGNIN)
				client_signin_hint(&s, why);
			else
				fprintf(stderr, "%s: %s\n", BSP_NAME, why);
			free(why);
			if (rc == CLIENT_EXIT_ABSENT)
				rc = CLIENT_EXIT_PROXY;
		}
		client_answer_clear(&a);
		break;
	}
	freezero_str(body);
	token_close(&s, t);
	return (rc);
}
