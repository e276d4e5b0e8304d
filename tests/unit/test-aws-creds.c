/*
 * test-aws-creds.c: the AWS credential chain. The pure parsers (ISO 8601,
 * the shared INI files, credential_process and metadata JSON, STS XML) with
 * good and bad input; a real credential_process run through the async
 * runner (good, bad Version, failing, too much output, timeout, cancel);
 * and the whole chain on one loop against an evhttp server on 127.0.0.1
 * that plays IMDSv2, the container endpoint and STS, with refreshes,
 * forced refreshes (single flight) and errors. The loop and timers drive
 * everything; the only sleeps are two deliberate stalls of the loop (a
 * busy daemon not reading the child's pipe).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "aws-creds.h"
#include "http-client.h"
#include "tap.h"
#include "loop.h"

static char	 tmpdir[256];

/* ------------------------------------------------------------------ */
/* Helpers (the loop's are in loop.h). */

static void
write_file(const char *name, const char *text, int mode, char *path,
    size_t size)
{
	FILE	*f;

	snprintf(path, size, "%s/%s", tmpdir, name);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fputs(text, f);
	fclose(f);
	chmod(path, (mode_t)mode);
}

/* An ISO 8601 time secs from now. */
static void
iso_in(long secs, char *buf, size_t len)
{
	time_iso8601(time(NULL) + secs, buf, len);
}

/* ------------------------------------------------------------------ */
/* Parsers. */

static void
test_time(void)
{
	static const struct {
		const char	*s;
		long long	 t;
	} good[] = {
		{ "2026-11-22T12:00:00Z", 1795348800LL },
		{ "2026-11-22T12:00:00.000Z", 1795348800LL },
		{ "2026-11-22T12:00:00.123456789Z", 1795348800LL },
		{ "2026-11-22T12:00:00+00:00", 1795348800LL },
		{ "2026-11-22T13:30:00+01:30", 1795348800LL },
		{ "2026-11-22T07:00:00-0500", 1795348800LL },
		{ "2026-11-22t12:00:00z", 1795348800LL },
		{ "2026-11-22 12:00:00Z", 1795348800LL },
		{ "2024-02-29T00:00:00Z", 1709164800LL },
		{ "2014-10-24T23:00:23Z", 1414191623LL },
		{ "1970-01-01T00:00:00Z", 0 },
	};
	static const char *const bad[] = {
		"", "2026-11-22", "2026-11-22T12:00:00", "2026-11-22T12:00Z",
		"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2025-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
		"2026-11-22T24:00:00Z", "2026-11-22T12:60:00Z",
		"2026-11-22T12:00:00ZZ", "2026-11-22T12:00:00.Z",
		"2026-11-22T12:00:00+25:00", "2026-11-22T12:00:00+01",
		"26-11-22T12:00:00Z", "2026/11/22T12:00:00Z",
		"1969-12-31T23:59:59Z", " 2026-11-22T12:00:00Z",
		"2026-11-22T12:00:00Z ", "1795348800",
	};
	size_t	i;
	time_t	t;

	for (i = 0; i < nitems(good); i++) {
		t = -1;
		ok(awscred_parse_time(good[i].s, &t) == 0 &&
		    (long long)t == good[i].t, "time: \"%s\"", good[i].s);
	}
	for (i = 0; i < nitems(bad); i++)
		ok(awscred_parse_time(bad[i], &t) == -1, "time refused: \"%s\"",
		    bad[i]);
}

static int
ini(const char *text, int config_file, const char *name,
    struct awscred_profile *p)
{
	return (awscred_ini_profile(text, strlen(text), config_file, name, p));
}

static void
test_ini(void)
{
	struct awscred_profile	p;
	const char		*config =
	    "\xef\xbb\xbf# comment\n"
	    "; another\n"
	    "[default]\r\n"
	    "region = eu-west-1\r\n"
	    "\n"
	    "[profile dev]  ; trailing comment\n"
	    "  AWS_ACCESS_KEY_ID   =   AKIDDEV  \n"
	    "aws_secret_access_key=secret#with#hash # comment\n"
	    "s3 =\n"
	    "  aws_session_token = nested-not-ours\n"
	    "  region = nested\n"
	    "region = us-west-2\n"
	    "[dev]\n"
	    "aws_access_key_id = WRONG\n"
	    "[profile   proc]\n"
	    "credential_process = /bin/echo '{\"Version\": 1}'\n"
	    "[sso-session corp]\n"
	    "sso_start_url = https://example.awsapps.com/start\n"
	    "[profile sso]\n"
	    "sso_session = corp\n"
	    "sso_account_id = 123\n"
	    "[profile web]\n"
	    "role_arn = arn:aws:iam::123456789012:role/web\n"
	    "web_identity_token_file = /var/run/token\n"
	    "role_session_name = sess\n"
	    "no equals sign here\n"
	    "= no key\n"
	    "[profile dev]\n"
	    "aws_session_token = tok;en\n";
	const char		*creds =
	    "[dev]\n"
	    "aws_secret_access_key = fromcreds\n"
	    "[profile proc]\n"
	    "aws_access_key_id = LITERAL\n"
	    "[default]\n"
	    "aws_access_key_id=AKIDDEFAULT\n"
	    "aws_secret_access_key=sd\n";

	memset(&p, 0, sizeof p);
	is_int(ini(config, 1, "dev", &p), 1, "ini: [profile dev] found");
	is_str(p.access_key_id, "AKIDDEV", "ini: key case and white space");
	is_str(p.secret_access_key, "secret#with#hash",
	    "ini: # inside a value is not a comment");
	is_str(p.session_token, "tok;en",
	    "ini: repeated section merged; ';' inside a value kept");
	is_str(p.region, "us-west-2", "ini: nested sub-section skipped");
	is_int(ini(creds, 0, "dev", &p), 1, "ini: [dev] in credentials");
	is_str(p.secret_access_key, "fromcreds",
	    "ini: credentials file wins when merged after config");
	is_str(p.access_key_id, "AKIDDEV", "ini: other keys kept");
	awscred_profile_clear(&p);

	is_int(ini(config, 1, "default", &p), 1, "ini: [default] in config");
	is_str(p.region, "eu-west-1", "ini: CRLF line ends");
	ok(p.access_key_id == NULL, "ini: default has no keys in config");
	awscred_profile_clear(&p);
	is_int(ini(creds, 0, "default", &p), 1, "ini: [default] in creds");
	is_str(p.access_key_id, "AKIDDEFAULT", "ini: no spaces around =");
	awscred_profile_clear(&p);

	is_int(ini(creds, 0, "proc", &p), 0,
	    "ini: [profile proc] in credentials is not profile proc");
	ok(!p.found && p.access_key_id == NULL, "ini: nothing taken");
	is_int(ini(config, 1, "proc", &p), 1, "ini: [profile   proc]");
	is_str(p.credential_process, "/bin/echo '{\"Version\": 1}'",
	    "ini: credential_process kept whole");
	awscred_profile_clear(&p);

	is_int(ini(config, 1, "sso", &p), 1, "ini: sso profile");
	is_str(p.sso, "sso_account_id", "ini: sso_* noticed");
	awscred_profile_clear(&p);
	is_int(ini(config, 1, "web", &p), 1, "ini: web identity profile");
	is_str(p.role_arn, "arn:aws:iam::123456789012:role/web", "ini: role");
	is_str(p.web_identity_token_file, "/var/run/token", "ini: token file");
	is_str(p.role_session_name, "sess", "ini: session name");
	awscred_profile_clear(&p);

	is_int(ini(config, 1, "corp", &p), 0, "ini: sso-session is no profile");
	is_int(ini(config, 1, "missing", &p), 0, "ini: missing profile");
	is_int(ini("", 1, "default", &p), 0, "ini: empty file");
	is_int(ini("[default", 1, "default", &p), 0, "ini: broken header");
	is_int(ini("[profile]\nregion=x\n", 1, "", &p), 0,
	    "ini: [profile] alone names nothing");
	awscred_profile_clear(&p);
}

static void
test_process_json(void)
{
	struct aws_creds	*c;
	char			*cause = NULL;
	const char		*j;

#define PJ(s)	awscred_parse_process((s), strlen(s), "credential_process", \
		    &cause)
	j = "{\"Version\":1,\"AccessKeyId\":\"ASIAPROC\",\"SecretAccessKey\":"
	    "\"s/e+c=r\",\"SessionToken\":\"tok\",\"Expiration\":"
	    "\"2026-11-22T12:00:00Z\"}";
	c = PJ(j);
	ok(c != NULL, "process: full answer");
	if (c != NULL) {
		is_str(c->access_key_id, "ASIAPROC", "process: key id");
		is_str(c->secret_access_key, "s/e+c=r", "process: secret");
		is_str(c->session_token, "tok", "process: token");
		is_int(c->expiration, 1795348800LL, "process: expiration");
		is_str(c->source, "credential_process", "process: source");
		is_int(c->refcnt, 1, "process: one reference");
	}
	aws_creds_unref(c);
	c = PJ("{\"Version\":1,\"AccessKeyId\":\"AKIA1\",\"SecretAccessKey\":"
	    "\"s\"}");
	ok(c != NULL && c->session_token == NULL && c->expiration == 0,
	    "process: token and expiration optional");
	aws_creds_unref(c);
	c = PJ("{\"Version\":1,\"AccessKeyId\":\"AKIA1\",\"SecretAccessKey\":"
	    "\"s\",\"SessionToken\":null,\"Expiration\":null}");
	ok(c != NULL, "process: null token and expiration");
	aws_creds_unref(c);

	static const char *const bad[] = {
		"{\"Version\":2,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}",
		"{\"Version\":\"1\",\"AccessKeyId\":\"A\","
		    "\"SecretAccessKey\":\"s\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}",
		"{\"Version\":1,\"SecretAccessKey\":\"s\"}",
		"{\"Version\":1,\"AccessKeyId\":\"A\"}",
		"{\"Version\":1,\"AccessKeyId\":\"\",\"SecretAccessKey\":\"s\"}",
		"{\"Version\":1,\"AccessKeyId\":\"A B\","
		    "\"SecretAccessKey\":\"s\"}",
		"{\"Version\":1,\"AccessKeyId\":\"A\","
		    "\"SecretAccessKey\":\"s\\r\\nX-Evil: 1\"}",
		"{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
		    "\"SessionToken\":\"t\\n\"}",
		"{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
		    "\"SessionToken\":5}",
		"{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
		    "\"Expiration\":\"tomorrow\"}",
		"{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
		    "\"Expiration\":1795348800}",
		"{\"Version\":1,\"AccessKeyId\":\"A\",\"AccessKeyId\":\"B\","
		    "\"SecretAccessKey\":\"s\"}",
		"[1]", "", "not json", "{\"Version\":1,",
	};
	size_t	i;

	for (i = 0; i < nitems(bad); i++) {
		c = PJ(bad[i]);
		ok(c == NULL && cause != NULL, "process refused #%zu: %s", i,
		    cause != NULL ? cause : "(accepted)");
		aws_creds_unref(c);
		free(cause);
		cause = NULL;
	}
	c = PJ("{\"Version\":2,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}");
	ok(cause != NULL && strstr(cause, "Version") != NULL,
	    "process: bad Version says so");
	free(cause);
	cause = NULL;
#undef PJ
}

static void
test_metadata_json(void)
{
	struct aws_creds	*c;
	char			*cause = NULL;
	const char		*j;

	j = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : "
	    "\"2026-11-22T06:00:00Z\",\n  \"Type\" : \"AWS-HMAC\",\n"
	    "  \"AccessKeyId\" : \"ASIAIMDS\",\n  \"SecretAccessKey\" : "
	    "\"imdssecret\",\n  \"Token\" : \"imdstoken\",\n"
	    "  \"Expiration\" : \"2026-11-22T12:00:00Z\"\n}";
	c = awscred_parse_metadata(j, strlen(j), "imds", &cause);
	ok(c != NULL, "imds: answer parsed");
	if (c != NULL) {
		is_str(c->session_token, "imdstoken", "imds: Token");
		is_int(c->expiration, 1795348800LL, "imds: Expiration");
		is_str(c->source, "imds", "imds: source");
	}
	aws_creds_unref(c);
	j = "{\"AccessKeyId\":\"ASIAECS\",\"SecretAccessKey\":\"s\",\"Token\":"
	    "\"t\",\"Expiration\":\"2026-11-22T12:00:00+00:00\",\"RoleArn\":"
	    "\"arn:aws:iam::1:role/x\"}";
	c = awscred_parse_metadata(j, strlen(j), "container", &cause);
	ok(c != NULL && strcmp(c->access_key_id, "ASIAECS") == 0,
	    "container: answer without Code");
	aws_creds_unref(c);
	j = "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"no\"}";
	c = awscred_parse_metadata(j, strlen(j), "imds", &cause);
	ok(c == NULL && cause != NULL &&
	    strstr(cause, "AssumeRoleUnauthorizedAccess") != NULL,
	    "imds: Code other than Success refused (%s)", cause);
	free(cause);
	cause = NULL;
	j = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
	    "\"SessionToken\":\"t\"}";
	c = awscred_parse_metadata(j, strlen(j), "imds", &cause);
	ok(c != NULL && c->session_token == NULL,
	    "metadata: the token field is Token, not SessionToken");
	aws_creds_unref(c);
	c = awscred_parse_metadata("<html>", 6, "imds", &cause);
	ok(c == NULL && cause != NULL, "metadata: not JSON refused");
	free(cause);
}

static void
test_sts_xml(void)
{
	struct aws_creds	*c;
	char			*cause = NULL;
	const char		*x;

	x = "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws"
	    ".com/doc/2011-06-15/\">\n  <AssumeRoleWithWebIdentityResult>\n"
	    "    <SubjectFromWebIdentityToken>system:sa</SubjectFromWebIdentity"
	    "Token>\n    <Credentials>\n"
	    "      <SessionToken>FwoG&amp;tok&#x2F;en&#43;==</SessionToken>\n"
	    "      <SecretAccessKey>\n   wJalr&lt;&gt;&quot;&apos;KEY\n"
	    "      </SecretAccessKey>\n"
	    "      <Expiration>2026-11-22T12:00:00Z</Expiration>\n"
	    "      <AccessKeyId>ASIASTS</AccessKeyId>\n"
	    "    </Credentials>\n    <AssumedRoleUser><AccessKeyId>NOTTHIS"
	    "</AccessKeyId></AssumedRoleUser>\n"
	    "  </AssumeRoleWithWebIdentityResult>\n  <ResponseMetadata>"
	    "<RequestId>r-1</RequestId></ResponseMetadata>\n"
	    "</AssumeRoleWithWebIdentityResponse>\n";
	c = awscred_parse_sts(x, strlen(x), "web identity", &cause);
	ok(c != NULL, "sts: answer parsed (%s)", cause ? cause : "");
	if (c != NULL) {
		is_str(c->access_key_id, "ASIASTS",
		    "sts: AccessKeyId inside Credentials");
		is_str(c->secret_access_key, "wJalr<>\"'KEY",
		    "sts: entities decoded, white space trimmed");
		is_str(c->session_token, "FwoG&tok/en+==",
		    "sts: numeric references decoded");
		is_int(c->expiration, 1795348800LL, "sts: Expiration");
		is_str(c->source, "web identity", "sts: source");
	}
	aws_creds_unref(c);

	x = "<Credentials><AccessKeyId><![CDATA[AKIDCDATA]]></AccessKeyId>"
	    "<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>"
	    "</Credentials>";
	c = awscred_parse_sts(x, strlen(x), "web identity", &cause);
	ok(c != NULL && strcmp(c->access_key_id, "AKIDCDATA") == 0 &&
	    c->expiration == 0, "sts: CDATA, no Expiration");
	aws_creds_unref(c);

	x = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
	    "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
	    "<Message>Token &quot;x&quot; is expired\n</Message></Error>"
	    "<RequestId>r</RequestId></ErrorResponse>";
	c = awscred_parse_sts(x, strlen(x), "web identity", &cause);
	ok(c == NULL && cause != NULL, "sts: ErrorResponse refused");
	ok(cause != NULL && strstr(cause, "InvalidIdentityToken") != NULL &&
	    strstr(cause, "Token \\\"x\\\" is expired") != NULL &&
	    strchr(cause, '\n') == NULL, "sts: code and escaped message: %s",
	    cause ? cause : "");
	free(cause);
	cause = NULL;

	static const char *const bad[] = {
		"", "<html>hello</html>",
		"<Credentials><AccessKeyId>A</AccessKeyId></Credentials>",
		"<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s"
		    "</SecretAccessKey></Credentials>",
		"<Credentials><AccessKeyId>A&bogus;</AccessKeyId><SecretAccessKey>"
		    "s</SecretAccessKey><SessionToken>t</SessionToken>"
		    "</Credentials>",
		"<Credentials><AccessKeyId>A&#0;</AccessKeyId><SecretAccessKey>"
		    "s</SecretAccessKey><SessionToken>t</SessionToken>"
		    "</Credentials>",
		"<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s"
		    "</SecretAccessKey><SessionToken>t&#10;x</SessionToken>"
		    "</Credentials>",
		"<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s"
		    "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>"
		    "soon</Expiration></Credentials>",
		"<Credentials><AccessKeyId>A</AccessKeyId>",
		"<Credentials><AccessKeyId><b>A</b></AccessKeyId>"
		    "<SecretAccessKey>s</SecretAccessKey><SessionToken>t"
		    "</SessionToken></Credentials>",
	};
	size_t	i;

	for (i = 0; i < nitems(bad); i++) {
		c = awscred_parse_sts(bad[i], strlen(bad[i]), "web identity",
		    &cause);
		ok(c == NULL && cause != NULL, "sts refused #%zu: %s", i,
		    cause != NULL ? cause : "(accepted)");
		aws_creds_unref(c);
		free(cause);
		cause = NULL;
	}
}

static void
test_new(void)
{
	struct aws_creds	*c;
	char			*cause = NULL;

	c = awscred_new("AKIA1", "s", "", 0, "config", &cause);
	ok(c != NULL && c->session_token == NULL, "new: empty token is none");
	aws_creds_unref(c);
	c = awscred_new("AKIA1", "s", "t\r", 0, "config", &cause);
	ok(c == NULL, "new: CR in the token refused");
	free(cause);
	cause = NULL;
	c = awscred_new("AKIA/1", "s", NULL, 0, "config", &cause);
	ok(c == NULL, "new: '/' in the key id refused");
	free(cause);
	cause = NULL;
	c = awscred_new("AKIA1", "", NULL, 0, "config", &cause);
	ok(c == NULL, "new: empty secret refused");
	free(cause);
}

/* ------------------------------------------------------------------ */
/* credential_process through the runner. */

static struct {
	int			 done;
	struct aws_creds	*c;
	char			*cause;
} pr;

static void
proc_cb(struct aws_creds *c, const char *cause, void *arg)
{
	pr.done = 1;
	pr.c = c;
	pr.cause = cause != NULL ? xstrdup(cause) : NULL;
	*(int *)arg = 1;
}

static void
proc_reset(void)
{
	aws_creds_unref(pr.c);
	free(pr.cause);
	memset(&pr, 0, sizeof pr);
}

/*
 * Run cmd through the runner; returns seconds taken, or -1. stall_ms keeps
 * the loop from reading for a while, as a busy daemon would.
 */
static double
proc_run_stall(const char *cmd, long timeout_ms, long stall_ms)
{
	struct awscred_proc	*p;
	char			*cause = NULL;
	int			 flag = 0;
	double			 t0 = now_mono();

	proc_reset();
	p = awscred_process_start(cmd, timeout_ms, "credential_process",
	    proc_cb, &flag, &cause);
	if (p == NULL) {
		diag("start: %s", cause);
		free(cause);
		return (-1);
	}
	ok(!pr.done, "process: no callback inside start");
	if (stall_ms > 0)
		usleep((useconds_t)stall_ms * 1000);
	if (run_until(&flag, 10) == -1)
		return (-1);
	return (now_mono() - t0);
}

static double
proc_run(const char *cmd, long timeout_ms)
{
	return (proc_run_stall(cmd, timeout_ms, 0));
}

static void
test_process_runner(void)
{
	char	path[512], cmd[600], exp[32], script[1024];
	double	t;
	int	flag = 0;
	struct awscred_proc *p;
	char	*cause = NULL;

	iso_in(3600, exp, sizeof exp);
	snprintf(script, sizeof script, "#!/bin/sh\n"
	    "printf '%%s' '{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC\", '\n"
	    "echo '\"SecretAccessKey\": \"procsecret\", \"SessionToken\": "
	    "\"proctoken\", \"Expiration\": \"%s\"}'\n"
	    "echo 'some noise on stderr' >&2\n", exp);
	write_file("good.sh", script, 0700, path, sizeof path);
	snprintf(cmd, sizeof cmd, "%s --profile x", path);
	t = proc_run(cmd, 5000);
	ok(t >= 0 && pr.c != NULL, "runner: good script gives credentials "
	    "(%s)", pr.cause ? pr.cause : "");
	if (pr.c != NULL) {
		is_str(pr.c->access_key_id, "ASIAPROC", "runner: key id");
		is_str(pr.c->session_token, "proctoken", "runner: token");
		ok(pr.c->expiration > time(NULL), "runner: expiration");
	}

	write_file("v2.sh", "#!/bin/sh\necho '{\"Version\": 2, "
	    "\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}'\n", 0700,
	    path, sizeof path);
	t = proc_run(path, 5000);
	ok(t >= 0 && pr.c == NULL && pr.cause != NULL &&
	    strstr(pr.cause, "Version") != NULL,
	    "runner: bad Version refused (%s)", pr.cause ? pr.cause : "");

	t = proc_run("echo 'token expired; run aws sso login' >&2; exit 3",
	    5000);
	ok(t >= 0 && pr.c == NULL && pr.cause != NULL &&
	    strstr(pr.cause, "status 3") != NULL &&
	    strstr(pr.cause, "aws sso login") != NULL,
	    "runner: exit status and stderr in the cause (%s)",
	    pr.cause ? pr.cause : "");

	/* A big answer, written while the loop is busy. */
	snprintf(cmd, sizeof cmd, "pad=$(head -c 60000 /dev/zero | tr '\\0' ' '); "
	    "printf '{\"Version\":1,\"AccessKeyId\":\"AKIABIG\",'"
	    "'\"SecretAccessKey\":\"s\"%%s}' \"$pad\"");
	t = proc_run_stall(cmd, 5000, 200);
	ok(t >= 0 && pr.c != NULL, "runner: 60 KB answer read whole (%s)",
	    pr.cause ? pr.cause : "");

	/*
	 * More than a pipe holds while the loop is busy: the child must block
	 * (its end of the pipe is not non-blocking), not fail with EAGAIN.
	 */
	t = proc_run_stall("head -c 70000 /dev/zero", 5000, 300);
	ok(t >= 0 && pr.c == NULL && pr.cause != NULL &&
	    strstr(pr.cause, "more than") != NULL,
	    "runner: output above 64 KiB refused (%s)",
	    pr.cause ? pr.cause : "");

	t = proc_run("exec sleep 60", 300);
	ok(t >= 0 && t < 5 && pr.c == NULL && pr.cause != NULL &&
	    strstr(pr.cause, "timed out") != NULL,
	    "runner: sleep 60 killed after the timeout in %.2f s (%s)", t,
	    pr.cause ? pr.cause : "");

	/* A child that forks a grandchild holding stdout: the group dies. */
	t = proc_run("sleep 60 & sleep 60", 300);
	ok(t >= 0 && t < 5 && pr.cause != NULL &&
	    strstr(pr.cause, "timed out") != NULL,
	    "runner: the whole process group is killed (%.2f s)", t);

	t = proc_run("/nonexistent/credential-helper", 5000);
	ok(t >= 0 && pr.cause != NULL && strstr(pr.cause, "127") != NULL,
	    "runner: missing command (%s)", pr.cause ? pr.cause : "");
	proc_reset();

	/* Cancel: no callback, the child is killed and reaped on the loop. */
	p = awscred_process_start("exec sleep 60", 30000, "credential_process",
	    proc_cb, &flag, &cause);
	ok(p != NULL, "runner: started for cancel");
	run_for(0.1);
	awscred_process_cancel(p);
	run_for(0.3);
	ok(!pr.done, "runner: no callback after cancel");
	ok(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD,
	    "runner: cancelled child reaped");
	proc_reset();
}

/* ------------------------------------------------------------------ */
/* A fake IMDS / container endpoint / STS on one evhttp server. */

static struct {
	struct evhttp	*http;
	int		 port;
	int		 imds_token_puts;
	int		 imds_gets;
	int		 imds_gets_no_token;
	int		 container_gets;
	char		 container_auth[256];
	int		 sts_posts;
	char		 sts_body[4096];
	char		 akid[64];
	long		 expires_in;	/* 0: no Expiration */
	int		 sts_error;
	int		 imds_no_role;
	double		 delay;		/* answer after this many seconds */
} fake;

struct fake_delayed {
	struct evhttp_request	*req;
	int			 code;
	struct evbuffer		*b;
	struct event		*ev;
};

static void
fake_send_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct fake_delayed	*d = arg;

	evhttp_send_reply(d->req, d->code, "x", d->b);
	evbuffer_free(d->b);
	event_free(d->ev);
	free(d);
}

static void
fake_reply(struct evhttp_request *req, int code, const char *body)
{
	struct fake_delayed	*d = xcalloc(1, sizeof *d);
	struct timeval		 tv;

	d->req = req;
	d->code = code;
	d->b = evbuffer_new();
	evbuffer_add(d->b, body, strlen(body));
	d->ev = evtimer_new(bsp_base, fake_send_cb, d);
	tv.tv_sec = (time_t)fake.delay;
	tv.tv_usec = (suseconds_t)((fake.delay - (double)tv.tv_sec) * 1e6);
	evtimer_add(d->ev, &tv);
}

static void
fake_cb(struct evhttp_request *req, void *arg)
{
	const char	*uri = evhttp_request_get_uri(req), *tok, *auth;
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	char		 exp[32], body[2048], expel[80];
	size_t		 n;

	if (fake.expires_in != 0)
		iso_in(fake.expires_in, exp, sizeof exp);
	if (strcmp(uri, "/latest/api/token") == 0) {
		if (evhttp_request_get_command(req) != EVHTTP_REQ_PUT ||
		    evhttp_find_header(h,
		    "X-aws-ec2-metadata-token-ttl-seconds") == NULL) {
			fake_reply(req, 400, "");
			return;
		}
		fake.imds_token_puts++;
		fake_reply(req, 200, "imds-session-token");
		return;
	}
	if (strncmp(uri, "/latest/meta-data/iam/security-credentials/",
	    43) == 0) {
		tok = evhttp_find_header(h, "X-aws-ec2-metadata-token");
		if (tok == NULL || strcmp(tok, "imds-session-token") != 0) {
			fake.imds_gets_no_token++;
			fake_reply(req, 401, "");
			return;
		}
		fake.imds_gets++;
		if (uri[43] == '\0') {
			if (fake.imds_no_role)
				fake_reply(req, 404, "");
			else
				fake_reply(req, 200, "bsp-role\n");
			return;
		}
		if (strcmp(uri + 43, "bsp-role") != 0) {
			fake_reply(req, 404, "");
			return;
		}
		snprintf(body, sizeof body, "{\"Code\":\"Success\",\"Type\":"
		    "\"AWS-HMAC\",\"AccessKeyId\":\"%s\",\"SecretAccessKey\":"
		    "\"imds-secret\",\"Token\":\"imds-token\"%s%s%s}", fake.akid,
		    fake.expires_in ? ",\"Expiration\":\"" : "",
		    fake.expires_in ? exp : "", fake.expires_in ? "\"" : "");
		fake_reply(req, 200, body);
		return;
	}
	if (strncmp(uri, "/ecs/creds", 10) == 0) {
		fake.container_gets++;
		auth = evhttp_find_header(h, "Authorization");
		snprintf(fake.container_auth, sizeof fake.container_auth, "%s",
		    auth != NULL ? auth : "");
		if (auth == NULL || strcmp(auth, "Bearer pod-token") != 0) {
			fake_reply(req, 401, "{\"message\":\"no\"}");
			return;
		}
		snprintf(body, sizeof body, "{\"AccessKeyId\":\"%s\","
		    "\"SecretAccessKey\":\"ecs-secret\",\"Token\":\"ecs-token\","
		    "\"Expiration\":\"%s\",\"RoleArn\":\"arn:x\"}", fake.akid,
		    exp);
		fake_reply(req, 200, body);
		return;
	}
	if (strcmp(uri, "/") == 0 &&
	    evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		fake.sts_posts++;
		n = evbuffer_get_length(in);
		if (n >= sizeof fake.sts_body)
			n = sizeof fake.sts_body - 1;
		evbuffer_copyout(in, fake.sts_body, n);
		fake.sts_body[n] = '\0';
		if (fake.sts_error) {
			fake_reply(req, 400, "<ErrorResponse><Error><Type>Sender"
			    "</Type><Code>InvalidIdentityToken</Code><Message>"
			    "Token &amp; claims are bad</Message></Error>"
			    "</ErrorResponse>");
			return;
		}
		if (fake.expires_in)
			snprintf(expel, sizeof expel, "<Expiration>%s"
			    "</Expiration>", exp);
		else
			expel[0] = '\0';
		snprintf(body, sizeof body, "<AssumeRoleWithWebIdentityResponse>"
		    "<AssumeRoleWithWebIdentityResult><Credentials>"
		    "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>sts-secret"
		    "</SecretAccessKey><SessionToken>sts&amp;token</SessionToken>"
		    "%s</Credentials></AssumeRoleWithWebIdentityResult>"
		    "</AssumeRoleWithWebIdentityResponse>", fake.akid, expel);
		fake_reply(req, 200, body);
		return;
	}
	fake_reply(req, 404, "");
}

static void
fake_start(void)
{
	struct evhttp_bound_socket	*bs;
	struct sockaddr_in		 sin;
	socklen_t			 len = sizeof sin;

	fake.http = evhttp_new(bsp_base);
	evhttp_set_allowed_methods(fake.http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_POST);
	evhttp_set_gencb(fake.http, fake_cb, NULL);
	bs = evhttp_bind_socket_with_handle(fake.http, "127.0.0.1", 0);
	if (bs == NULL)
		fatalx("cannot bind the fake server");
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin,
	    &len);
	fake.port = ntohs(sin.sin_port);
}

static void
fake_reset(const char *akid, long expires_in)
{
	struct evhttp	*h = fake.http;
	int		 port = fake.port;

	memset(&fake, 0, sizeof fake);
	fake.http = h;
	fake.port = port;
	snprintf(fake.akid, sizeof fake.akid, "%s", akid);
	fake.expires_in = expires_in;
}

/* ------------------------------------------------------------------ */
/* The chain. */

static const char *const aws_env[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_CREDENTIAL_EXPIRATION", "AWS_PROFILE", "AWS_CONFIG_FILE",
	"AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_ENDPOINT_URL",
	"AWS_ENDPOINT_URL_STS", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
	"AWS_EC2_METADATA_V1_DISABLED",
};

static void
env_clean(void)
{
	size_t	i;
	char	path[512];

	for (i = 0; i < nitems(aws_env); i++)
		unsetenv(aws_env[i]);
	/* No ~/.aws of the person running the tests, and no real IMDS. */
	snprintf(path, sizeof path, "%s/nonexistent", tmpdir);
	setenv("AWS_CONFIG_FILE", path, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static struct config	tcfg;

static void
cfg_reset(void)
{
	free(tcfg.aws_access_key_id);
	free(tcfg.aws_secret_access_key);
	free(tcfg.aws_session_token);
	free(tcfg.aws_profile);
	free(tcfg.aws_region);
	free(tcfg.aws_bearer_token);
	memset(&tcfg, 0, sizeof tcfg);
	tcfg.aws_region = xstrdup("us-east-1");
}

/* Start the module and run the loop until it has something to say. */
static struct aws_creds *
chain_start(double max)
{
	struct aws_creds	*c;
	char			*cause = NULL;
	double			 end = now_mono() + max;
	const char		*d;

	aws_creds_free();
	if (aws_creds_init(&tcfg, &cause) == -1) {
		diag("init: %s", cause);
		free(cause);
		return (NULL);
	}
	while ((c = aws_creds_get()) == NULL && now_mono() < end) {
		d = aws_creds_problem();
		if (d != NULL && strncmp(d, "no usable", 9) == 0)
			break;
		run_for(0.02);
	}
	return (c);
}

static struct {
	int	calls;
	int	ok[8];
} wt;

static void
waiter_cb(void *arg, int okv)
{
	int	i = (int)(intptr_t)arg;

	wt.ok[i] = okv;
	wt.calls++;
}

static void
test_chain_static(void)
{
	struct aws_creds	*c;
	const char		*d;
	char			 path[512], cpath[512], text[1024];

	env_clean();
	cfg_reset();
	c = chain_start(1);
	ok(c == NULL, "chain: nothing configured, nothing found");
	d = NULL;
	ok(!aws_creds_ready(&d), "chain: not ready");
	is_str(d, "no AWS credentials configured", "chain: short detail");
	d = aws_creds_problem();
	ok(d != NULL && strstr(d, "no source is configured") != NULL &&
	    strstr(d, "aws.access_key_id") != NULL,
	    "chain: problem() says what to configure (%s)", d ? d : "");

	tcfg.aws_access_key_id = xstrdup("AKIACONFIG");
	tcfg.aws_secret_access_key = xstrdup("configsecret");
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	c = chain_start(1);
	ok(c != NULL && strcmp(c->source, "config") == 0 &&
	    strcmp(c->access_key_id, "AKIACONFIG") == 0 && c->expiration == 0,
	    "chain: aws.* keys come first");
	ok(c != NULL && c->refcnt == 2, "chain: get() gives a reference");
	ok(aws_creds_ready(&d), "chain: ready with static keys");
	aws_creds_unref(c);

	cfg_reset();
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	c = chain_start(1);
	ok(c != NULL && strcmp(c->source, "environment") == 0 &&
	    strcmp(c->session_token, "envtoken") == 0,
	    "chain: environment second");
	aws_creds_unref(c);

	/* AWS_PROFILE set: the environment keys are skipped. */
	write_file("credentials", "[dev]\naws_access_key_id = AKIAPROFILE\n"
	    "aws_secret_access_key = profilesecret\n", 0600, path, sizeof path);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	setenv("AWS_PROFILE", "dev", 1);
	c = chain_start(1);
	ok(c != NULL && strcmp(c->source, "profile dev") == 0 &&
	    strcmp(c->access_key_id, "AKIAPROFILE") == 0,
	    "chain: AWS_PROFILE wins over the environment keys");
	aws_creds_unref(c);

	/* aws.profile wins over AWS_PROFILE; config [profile x] syntax. */
	write_file("config", "[profile ops]\naws_access_key_id = AKIAOPS\n"
	    "aws_secret_access_key = opssecret\n", 0600, cpath, sizeof cpath);
	setenv("AWS_CONFIG_FILE", cpath, 1);
	tcfg.aws_profile = xstrdup("ops");
	c = chain_start(1);
	ok(c != NULL && strcmp(c->source, "profile ops") == 0,
	    "chain: aws.profile chooses the profile");
	aws_creds_unref(c);

	/* An explicit profile that does not exist says so. */
	free(tcfg.aws_profile);
	tcfg.aws_profile = xstrdup("nosuch");
	c = chain_start(1);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL &&
	    strstr(d, "profile nosuch: not found") != NULL,
	    "chain: missing explicit profile reported (%s)", d ? d : "");
	d = NULL;
	aws_creds_ready(&d);
	is_str(d, "no usable AWS credentials (failed: profile nosuch)",
	    "chain: short detail names the source");

	/* SSO profiles are refused with a way out. */
	write_file("config", "[profile corp]\nsso_session = corp\n"
	    "sso_account_id = 1\n", 0600, cpath, sizeof cpath);
	free(tcfg.aws_profile);
	tcfg.aws_profile = xstrdup("corp");
	c = chain_start(1);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL && strstr(d, "export-credentials") != NULL,
	    "chain: SSO profile explained (%s)", d ? d : "");

	/* credential_process in a profile: asynchronous, expiring. */
	iso_in(7200, text + 900, 100);
	snprintf(text, 900, "[profile proc]\ncredential_process = printf "
	    "'{\"Version\":1,\"AccessKeyId\":\"ASIAPROC\",\"SecretAccessKey\":"
	    "\"s\",\"SessionToken\":\"t\",\"Expiration\":\"%s\"}'\n",
	    text + 900);
	write_file("config", text, 0600, cpath, sizeof cpath);
	free(tcfg.aws_profile);
	tcfg.aws_profile = xstrdup("proc");
	c = chain_start(5);
	ok(c != NULL && strcmp(c->source, "credential_process") == 0 &&
	    c->expiration > time(NULL) + 7000,
	    "chain: credential_process through the loop");
	aws_creds_unref(c);

	/* aws.bearer_token: nothing to resolve, ready anyway. */
	cfg_reset();
	tcfg.aws_bearer_token = xstrdup("ABSKbearer");
	c = chain_start(0.2);
	ok(c == NULL && aws_creds_ready(&d), "chain: bearer mode is ready");
	aws_creds_free();
	env_clean();
	cfg_reset();
}

static void
test_chain_imds(void)
{
	struct aws_creds	*c, *c2;
	char			 url[128];
	const char		*d;
	int			 puts;

	env_clean();
	cfg_reset();
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", fake.port);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url, 1);
	fake_reset("ASIAIMDS1", 3600);
	c = chain_start(5);
	ok(c != NULL && strcmp(c->source, "imds") == 0 &&
	    strcmp(c->access_key_id, "ASIAIMDS1") == 0 &&
	    strcmp(c->session_token, "imds-token") == 0,
	    "imds: credentials through token, role list, role");
	is_int(fake.imds_token_puts, 1, "imds: one token PUT");
	is_int(fake.imds_gets, 2, "imds: two GETs with the token");
	is_int(fake.imds_gets_no_token, 0, "imds: no GET without a token");

	/* AWS rejects them and IMDS has new ones: ok = 1. */
	fake_reset("ASIAIMDS2", 3600);
	memset(&wt, 0, sizeof wt);
	aws_creds_expired(c, waiter_cb, (void *)(intptr_t)0);
	aws_creds_expired(c, waiter_cb, (void *)(intptr_t)1);
	aws_creds_expired(c, waiter_cb, (void *)(intptr_t)2);
	aws_creds_cancel_wait((void *)(intptr_t)2);
	ok(wt.calls == 0, "expired: no callback inside the call");
	c2 = aws_creds_get();
	ok(c2 == c, "expired: old ones in use while refreshing");
	aws_creds_unref(c2);
	{
		volatile int *flag = &wt.calls;
		double end = now_mono() + 5;

		while (*flag < 2 && now_mono() < end)
			run_for(0.02);
	}
	is_int(wt.calls, 2, "expired: both waiters called, cancelled one not");
	ok(wt.ok[0] == 1 && wt.ok[1] == 1, "expired: ok = 1 (new keys)");
	is_int(fake.imds_token_puts, 1, "expired: one refresh (single flight)");
	c2 = aws_creds_get();
	ok(c2 != NULL && strcmp(c2->access_key_id, "ASIAIMDS2") == 0,
	    "expired: new credentials current");

	/* The old ones again: already replaced, ok = 1, no fetch. */
	memset(&wt, 0, sizeof wt);
	aws_creds_expired(c, waiter_cb, (void *)(intptr_t)0);
	run_for(0.05);
	ok(wt.calls == 1 && wt.ok[0] == 1 && fake.imds_token_puts == 1,
	    "expired: already replaced answers ok = 1 without a fetch");
	aws_creds_unref(c);

	/* Same keys come back: ok = 0, and not asked again at once. */
	memset(&wt, 0, sizeof wt);
	aws_creds_expired(c2, waiter_cb, (void *)(intptr_t)0);
	run_for(0.3);
	ok(wt.calls == 1 && wt.ok[0] == 0, "expired: same keys give ok = 0");
	puts = fake.imds_token_puts;
	memset(&wt, 0, sizeof wt);
	aws_creds_expired(c2, waiter_cb, (void *)(intptr_t)0);
	run_for(0.05);
	ok(wt.calls == 1 && wt.ok[0] == 0 && fake.imds_token_puts == puts,
	    "expired: throttled after a refresh that changed nothing");
	aws_creds_unref(c2);

	/* Short-lived credentials are refreshed at half their life. */
	fake_reset("ASIASHORT1", 4);
	c = chain_start(5);
	ok(c != NULL && strcmp(c->access_key_id, "ASIASHORT1") == 0,
	    "refresh: short-lived credentials");
	aws_creds_unref(c);
	fake_reset("ASIASHORT2", 3600);
	{
		double end = now_mono() + 5;

		while (fake.imds_token_puts == 0 && now_mono() < end)
			run_for(0.05);
		run_for(0.2);
	}
	c = aws_creds_get();
	ok(c != NULL && strcmp(c->access_key_id, "ASIASHORT2") == 0,
	    "refresh: replaced before they expire");
	aws_creds_unref(c);

	/* Refresh fails: the old ones stay until they expire. */
	fake_reset("ASIAEXP1", 3);
	c = chain_start(5);
	aws_creds_unref(c);
	fake.imds_no_role = 1;
	run_for(1.8);
	c = aws_creds_get();
	ok(c != NULL && strcmp(c->access_key_id, "ASIAEXP1") == 0 &&
	    fake.imds_token_puts >= 2,
	    "refresh failed: old credentials still served");
	aws_creds_unref(c);
	d = aws_creds_problem();
	ok(d != NULL && strstr(d, "no IAM role") != NULL,
	    "refresh failed: problem says why (%s)", d ? d : "");
	d = NULL;
	aws_creds_ready(&d);
	is_str(d, NULL, "refresh failed: still ready");
	run_for(2);
	c = aws_creds_get();
	d = NULL;
	ok(c == NULL && !aws_creds_ready(&d),
	    "refresh failed: expired credentials are not served");
	aws_creds_unref(c);

	/* No role at all. */
	fake_reset("X", 0);
	fake.imds_no_role = 1;
	c = chain_start(5);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL && strstr(d, "imds: no IAM role") != NULL,
	    "imds: no role reported (%s)", d ? d : "");

	/* Not reachable: a closed port. */
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9", 1);
	c = chain_start(5);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL && strstr(d, "not reachable") != NULL,
	    "imds: unreachable reported (%s)", d ? d : "");
	aws_creds_free();
}

static void
test_chain_container(void)
{
	struct aws_creds	*c;
	char			 url[128], path[512];
	const char		*d;

	env_clean();
	cfg_reset();
	fake_reset("ASIAECS1", 3600);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/ecs/creds?id=1",
	    fake.port);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
	write_file("pod-token", "Bearer pod-token\n", 0644, path, sizeof path);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", path, 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer wrong", 1);
	c = chain_start(5);
	ok(c != NULL && strcmp(c->source, "container") == 0 &&
	    strcmp(c->access_key_id, "ASIAECS1") == 0,
	    "container: credentials (%s)", c ? "" : aws_creds_problem());
	is_str(fake.container_auth, "Bearer pod-token",
	    "container: token file wins over the variable");
	aws_creds_unref(c);

	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod\r\nX: y", 1);
	c = chain_start(1);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL && strstr(d, "line break") != NULL &&
	    fake.container_gets == 1, "container: CR/LF token refused");

	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
	    "http://169.254.169.254/creds", 1);
	c = chain_start(1);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL && strstr(d, "FULL_URI must be") != NULL,
	    "container: FULL_URI host not allowed (%s)", d ? d : "");
	aws_creds_free();
}

static void
test_chain_sts(void)
{
	struct aws_creds	*c;
	char			 url[128], path[512];
	const char		*d;

	env_clean();
	cfg_reset();
	fake_reset("ASIASTS1", 3600);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", fake.port);
	setenv("AWS_ENDPOINT_URL_STS", url, 1);
	write_file("web-token", "eyJ.web+token/=\n", 0644, path, sizeof path);
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bsp", 1);
	setenv("AWS_ROLE_SESSION_NAME", "bsp-test", 1);
	c = chain_start(5);
	ok(c != NULL && strcmp(c->source, "web identity") == 0 &&
	    strcmp(c->session_token, "sts&token") == 0,
	    "sts: credentials (%s)", c ? "" : aws_creds_problem());
	ok(strstr(fake.sts_body, "Action=AssumeRoleWithWebIdentity") != NULL &&
	    strstr(fake.sts_body, "Version=2011-06-15") != NULL &&
	    strstr(fake.sts_body, "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012"
	    "%3Arole%2Fbsp") != NULL &&
	    strstr(fake.sts_body, "RoleSessionName=bsp-test") != NULL &&
	    strstr(fake.sts_body, "WebIdentityToken=eyJ.web%2Btoken%2F%3D") !=
	    NULL && strchr(fake.sts_body, '\n') == NULL,
	    "sts: form body (%s)", fake.sts_body);
	aws_creds_unref(c);

	/* The token file is read again on every refresh. */
	write_file("web-token", "eyJ.rotated\n", 0644, path, sizeof path);
	fake_reset("ASIASTS2", 3600);
	memset(&wt, 0, sizeof wt);
	c = aws_creds_get();
	aws_creds_expired(c, waiter_cb, (void *)(intptr_t)0);
	run_until(&wt.calls, 5);
	ok(wt.ok[0] == 1 && strstr(fake.sts_body, "eyJ.rotated") != NULL,
	    "sts: refresh re-reads the token file");
	aws_creds_unref(c);

	fake_reset("X", 3600);
	fake.sts_error = 1;
	c = chain_start(5);
	d = aws_creds_problem();
	ok(c == NULL && d != NULL && strstr(d, "InvalidIdentityToken") !=
	    NULL && strstr(d, "Token & claims are bad") != NULL,
	    "sts: ErrorResponse reported (%s)", d ? d : "");

	/* The env source goes before the container endpoint. */
	fake.sts_error = 0;
	snprintf(url, sizeof url, "http://127.0.0.1:%d/ecs/creds", fake.port);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod-token", 1);
	fake_reset("ASIAORDER", 3600);
	c = chain_start(5);
	ok(c != NULL && strcmp(c->source, "web identity") == 0 &&
	    fake.container_gets == 0, "chain: web identity before container");
	aws_creds_unref(c);

	/* STS fails: the chain goes on to the container endpoint. */
	fake.sts_error = 1;
	c = chain_start(5);
	ok(c != NULL && strcmp(c->source, "container") == 0,
	    "chain: a failing source does not stop the chain");
	aws_creds_unref(c);

	/* Reload with other settings resolves again. */
	fake.sts_error = 0;
	tcfg.aws_access_key_id = xstrdup("AKIARELOAD");
	tcfg.aws_secret_access_key = xstrdup("reloadsecret");
	ok(aws_creds_reload(&tcfg, NULL) == 0, "reload: accepted");
	c = aws_creds_get();
	ok(c != NULL && strcmp(c->source, "config") == 0,
	    "reload: new aws.* keys in use");
	aws_creds_unref(c);
	aws_creds_free();
	env_clean();
}

int
main(void)
{
	char	*cause = NULL, cmd[300];

	signal(SIGPIPE, SIG_IGN);
	log_init("test-aws-creds");
	snprintf(tmpdir, sizeof tmpdir, "%s/bsp-aws-creds-XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		fatal("mkdtemp");
	bsp_base = event_base_new();
	bsp_dns = evdns_base_new(bsp_base, 0);

	test_time();
	test_ini();
	test_process_json();
	test_metadata_json();
	test_sts_xml();
	test_new();
	test_process_runner();

	if (hc_init(NULL, &cause) == -1)
		fatalx("hc_init: %s", cause);
	fake_start();
	test_chain_static();
	test_chain_imds();
	test_chain_container();
	test_chain_sts();

	aws_creds_free();
	hc_shutdown();
	evhttp_free(fake.http);
	run_for(0.05);
	cfg_reset();
	free(tcfg.aws_region);
	evdns_base_free(bsp_dns, 0);
	event_base_free(bsp_base);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return (tap_done());
}
