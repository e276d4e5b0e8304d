/*
 * route-aws.c: POST /aws/credentials, temporary AWS credentials for the
 * caller (aws.credential_roles), in the credential_process shape the AWS
 * CLI and Claude Code's awsCredentialExport read:
 * {"Version":1,"AccessKeyId","SecretAccessKey","SessionToken","Expiration"}.
 *
 * The body is {"role": NAME}; without a role, the one role the caller may
 * have is taken (several: 400 naming them). A role the caller may not have
 * (allow: groups, emails, domains, as the model rules) and one that does
 * not exist get the same 403, so names cannot be probed. Each user may ask
 * aws.credentials_per_minute times a minute. The credentials come from
 * sts:AssumeRole with the same RoleSessionName, SourceIdentity and session
 * tags as the per-user role (aws-roles.c). Every answer, given or refused,
 * is an audit row; credentials are handed out only once theirs is written.
 * Our token (JWT) may ask; an API key only if it was made with the
 * aws:credentials scope.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "aws-call.h"
#include "aws-creds.h"
#include "crypto.h"
#include "store.h"

#define VEND_LIMIT_USERS	10000	/* users with an allowance in memory */
#define VEND_ROLE_NAME_MAX	128

static struct addr_limit	*vend_limits;


struct vend {
	struct request			*r;
	const struct aws_credential_role *cr;	/* in r->cfg */
	struct awsrole_op		*op;
	struct aws_creds		*creds;
	char				 name[AWSID_NAME_MAX + 1];
	const char			*event;
	json_t				*detail;
	int				 audited;
	/* A refusal to answer after its audit row. */
	int				 code;
	const char			*error;
	char				 why[256];
};

static void	vend_refuse(struct vend *, int, const char *, const char *,
		    const char *, ...) printflike(5, 6);

static void
vend_free(void *arg)
{
	struct vend	*v = arg;

	awsrole_assume_cancel(v->op);
	if (v->creds != NULL)
		aws_creds_unref(v->creds);
	json_decref(v->detail);
	free(v);
}

static void
vend_abort(struct request *r)
{
	struct vend	*v = r->state;

	/* Only while STS is asked: the audit's unit runs to its end. */
	if (v != NULL && v->op != NULL) {
		awsrole_assume_cancel(v->op);
		v->op = NULL;
		request_unref(r);	/* vend_audited will not run */
	}
}

/* The audit row is written (or not): answer. */
static void
vend_audited(int status, void *arg)
{
	struct vend	*v = arg;
	struct request	*r = v->r;
	char		 exp[32];
	json_t		*j;

	if (status != STORE_OK)
		log_warnx("aws credentials for %s: cannot write the audit row",
		    r->principal->sub);
	if (v->creds == NULL)
		server_error_oauth(r, v->code, v->error, v->why);
	else if (status != STORE_OK)
		server_error_oauth(r, 503, "temporarily_unavailable", "the "
		    "credentials cannot be audited right now (the database); "
		    "try again shortly");
	else {
		j = json_pack("{s:i,s:s,s:s}", "Version", 1, "AccessKeyId",
		    v->creds->access_key_id, "SecretAccessKey",
		    v->creds->secret_access_key);
		if (v->creds->session_token != NULL)
			json_object_set_new(j, "SessionToken",
			    json_string(v->creds->session_token));
		if (v->creds->expiration != 0) {
			time_iso8601(v->creds->expiration, exp, sizeof exp);
			json_object_set_new(j, "Expiration", json_string(exp));
		}
		server_reply_json(r, 200, j);
	}
	request_unref(r);
}

static void
vend_audit_step(struct store_txn *t, int status, void *arg)
{
	struct vend	*v = arg;
	json_t		*d;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		vend_audited(STORE_ERROR, v);
		return;
	}
	if (!v->audited) {
		v->audited = 1;
		d = v->detail;
		v->detail = NULL;
		audit_event(t, v->event, v->r->principal->sub,
		    v->r->principal->sub, v->r->client, d, vend_audit_step, v);
		return;
	}
	store_commit(t, vend_audited, v);
}

/* Record the outcome, then answer (vend_audited). The request is held. */
static void
vend_audit(struct vend *v, const char *event)
{
	v->event = event;
	store_begin(STORE_WRITE, vend_audit_step, v);
}

/* Refuse with an audit row: code, OAuth error and a reason to show. */
static void
vend_refuse(struct vend *v, int code, const char *error, const char *role,
    const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(v->why, sizeof v->why, fmt, ap);
	va_end(ap);
	v->code = code;
	v->error = error;
	v->detail = json_pack("{s:s,s:i,s:s}", "role", role != NULL ? role :
	    "", "status", code, "reason", v->why);
	vend_audit(v, "aws_credentials_refused");
}

static void
vend_done(struct aws_creds *c, int cls, const char *msg, void *arg)
{
	struct vend	*v = arg;
	char		 exp[32];
	int		 code = 503;

	v->op = NULL;
	if (c == NULL) {
		if (cls == AWS_CALL_DENIED)
			code = 403;
		else if (cls == AWS_CALL_CLIENT)
			code = 500;
		vend_refuse(v, code, code == 403 ? "access_denied" :
		    "temporarily_unavailable", v->cr->name, "AWS did not give "
		    "credentials for role %s (%s); the proxy's log has the "
		    "details under request id %s", v->cr->name, msg, v->r->id);
		return;
	}
	v->creds = c;
	time_iso8601(c->expiration, exp, sizeof exp);
	v->detail = json_pack("{s:s,s:s,s:s,s:s,s:s}", "role", v->cr->name,
	    "role_arn", v->cr->role_arn, "session_name", v->name,
	    "access_key_id", c->access_key_id, "expiration",
	    c->expiration != 0 ? exp : "");
	vend_audit(v, "aws_credentials_issued");
}

/* May this credential ask at all? */
static int
vend_caller_ok(struct request *r)
{
	const struct principal	*p = r->principal;

	if (p->kind == PRINCIPAL_API_KEY &&
	    !strlist_contains(&p->scopes, SCOPE_AWS_CREDENTIALS)) {
		server_error_oauth(r, 403, "insufficient_scope", "this API key "
		    "lacks the " SCOPE_AWS_CREDENTIALS " scope; make one with "
		    "it, or use a token from this proxy's sign-in");
		return (0);
	}
	return (1);
}

/* The per-user allowance: its key is a hash of the user id. */
static int
vend_limit(struct request *r, long *retry)
{
	uint8_t	h[CRYPTO_HASH_LEN];
	char	key[2 * 24 + 1];
	size_t	i;

	if (vend_limits == NULL)
		vend_limits = addr_limit_new(VEND_LIMIT_USERS);
	crypto_sha256(r->principal->sub, strlen(r->principal->sub), h);
	for (i = 0; i < 24; i++)
		snprintf(key + 2 * i, 3, "%02x", h[i]);
	return (addr_limit_take(vend_limits, key, now_mono(),
	    (int)r->cfg->aws_credentials_per_minute, 60.0, retry));
}

/* POST /aws/credentials */
void
route_aws_credentials(struct request *r)
{
	const struct config			*c = r->cfg;
	const struct aws_credential_role	*cr = NULL, *only = NULL;
	struct vend				*v;
	json_t					*j = NULL, *jr;
	const char				*why, *role = NULL;
	char					 buf[32], *names;
	struct strlist				 allowed = { NULL, 0 };
	size_t					 i;
	long					 retry;

	if (c->naws_credential_roles == 0) {
		server_error_oauth(r, 404, "not_found", "this proxy does not "
		    "vend AWS credentials (aws.credential_roles is empty)");
		return;
	}
	if (!vend_caller_ok(r))
		return;
	if (vend_limit(r, &retry) == -1) {
		snprintf(buf, sizeof buf, "%ld", retry);
		server_set_header(r, "Retry-After", buf);
		server_error_oauth(r, 429, "slow_down", "too many requests for "
		    "AWS credentials; try again later");
		return;
	}
	if ((j = server_body_json(r, &why)) == NULL) {
		const uint8_t	*p;
		size_t		 len;

		/* An empty body is {}. */
		if (server_body(r, &p, &len) == -1 || len != 0) {
			server_error_oauth(r, 400, "invalid_request", why);
			return;
		}
		j = json_object();
	}
	jr = json_object_get(j, "role");
	if (jr != NULL && !json_is_null(jr) && (!json_is_string(jr) ||
	    json_string_length(jr) == 0 || json_string_length(jr) >
	    VEND_ROLE_NAME_MAX)) {
		json_decref(j);
		server_error_oauth(r, 400, "invalid_request", "role must be a "
		    "role name");
		return;
	}
	if (jr != NULL && json_is_string(jr))
		role = json_string_value(jr);
	for (i = 0; i < c->naws_credential_roles; i++) {
		if (!policy_who(c, &c->aws_credential_roles[i].groups,
		    &c->aws_credential_roles[i].emails,
		    &c->aws_credential_roles[i].domains, r->principal))
			continue;
		strlist_add(&allowed, c->aws_credential_roles[i].name);
		only = &c->aws_credential_roles[i];
		if (role != NULL &&
		    strcmp(role, c->aws_credential_roles[i].name) == 0)
			cr = &c->aws_credential_roles[i];
	}
	if (role == NULL && allowed.n == 1)
		cr = only;
	v = xcalloc(1, sizeof *v);
	v->r = r;
	v->cr = cr;
	r->state = v;
	r->state_free = vend_free;
	request_ref(r);
	if (role == NULL && allowed.n > 1) {
		names = strlist_join(&allowed, ", ");
		vend_refuse(v, 400, "invalid_request", NULL, "name a role: you "
		    "may have %s", names);
		free(names);
	} else if (cr == NULL && role != NULL)
		vend_refuse(v, 403, "access_denied", role, "role %s is not one "
		    "you may have", role);
	else if (cr == NULL)
		vend_refuse(v, 403, "access_denied", NULL, "there is no AWS "
		    "role you may have");
	else {
		awsid_session_name(r->principal, v->name);
		r->on_abort = vend_abort;
		v->op = awsrole_assume(c, r->principal, cr, vend_done, v);
	}
	strlist_free(&allowed);
	json_decref(j);
}

void
vend_free_all(void)
{
	addr_limit_free(vend_limits);
	vend_limits = NULL;
}
