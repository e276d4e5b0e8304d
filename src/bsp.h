/*
 * bsp.h: the public surface of every file in src/, one block per file.
 *
 * Self-contained modules (crypto.h, jose.h, sigv4.h, eventstream.h,
 * http-client.h) keep their own small headers; everything else that crosses
 * a file boundary is declared here.
 */

#ifndef BSP_H
#define BSP_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <time.h>

#include <jansson.h>

#define BSP_NAME	"bedrock-sso-proxy"

#ifndef __dead
#define __dead noreturn
#endif
#define printflike(a, b) __attribute__((format(printf, a, b)))
#define nitems(a) (sizeof (a) / sizeof ((a)[0]))

struct event_base;
struct evdns_base;
struct evhttp_request;
struct evhttp_connection;
struct evbuffer;
struct store_txn;

/* The store's callbacks (store.h has the same). */
typedef void	(*store_step_cb)(struct store_txn *, int, void *);
typedef void	(*store_end_cb)(int, void *);

extern struct event_base	*bsp_base;
extern struct evdns_base	*bsp_dns;

/* xmalloc.c */
void		*xmalloc(size_t);
void		*xcalloc(size_t, size_t);
void		*xreallocarray(void *, size_t, size_t);
char		*xstrdup(const char *);
char		*xstrndup(const char *, size_t);
char		*xmemdup0(const void *, size_t);
int		 xasprintf(char **, const char *, ...) printflike(2, 3);
int		 xvasprintf(char **, const char *, va_list) printflike(2, 0);
void		 memzero(void *, size_t);
void		 freezero(void *, size_t);
void		 freezero_str(char *);
size_t		 bsp_strlcpy(char *, const char *, size_t);
size_t		 bsp_strlcat(char *, const char *, size_t);
void		 evmem_init(void);
void		 evmem_release(void);
void		*evmem_malloc(size_t);	/* libevent's, named for the tests */
void		 evmem_free(void *);

/* log.c */
enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};
enum log_format {
	LOG_FMT_TEXT = 0,
	LOG_FMT_JSON,
};
#define TRACE_HTTP	0x01
#define TRACE_OAUTH	0x02
#define TRACE_UPSTREAM	0x04
#define TRACE_DB	0x08
#define TRACE_AUTH	0x10
#define TRACE_CONFIG	0x20
enum log_field_kind {
	LF_STR,
	LF_INT,
	LF_DBL,
};
struct log_field {
	const char		*key;
	enum log_field_kind	 kind;
	const char		*str;
	long long		 num;
	double			 dbl;
};
#define LFS(k, v)	{ (k), LF_STR, (v), 0, 0 }
#define LFI(k, v)	{ (k), LF_INT, NULL, (v), 0 }
#define LFD(k, v)	{ (k), LF_DBL, NULL, 0, (v) }
void		 log_init(const char *);
void		 log_configure(int, int, int);
int		 log_get_level(void);
int		 log_parse_trace(const char *, int *, char **);
void		 log_set_trace(int);
int		 log_trace_on(int);
void		 log_warn(const char *, ...) printflike(1, 2);
void		 log_warnx(const char *, ...) printflike(1, 2);
void		 log_info(const char *, ...) printflike(1, 2);
void		 log_debug(const char *, ...) printflike(1, 2);
void		 log_trace(int, const char *, ...) printflike(2, 3);
void		 log_errorx(const char *, ...) printflike(1, 2);
__dead void	 fatal(const char *, ...) printflike(1, 2);
__dead void	 fatalx(const char *, ...) printflike(1, 2);
void		 log_fields(int, const char *, const struct log_field *, size_t);
const char	*log_mask(const char *, char *, size_t);
size_t		 log_escape(const char *, size_t, char *, size_t);
void		 log_libevent_init(void);
void		 log_buffer_start(struct event_base *);
void		 log_buffer_stop(void);
void		 log_flush(void);

/* strlist.c */
struct strlist {
	char	**v;
	size_t	  n;
};
void		 strlist_add(struct strlist *, const char *);
void		 strlist_free(struct strlist *);
void		 strlist_copy(struct strlist *, const struct strlist *);
int		 strlist_contains(const struct strlist *, const char *);
int		 strlist_contains_nocase(const struct strlist *, const char *);
char		*strlist_join(const struct strlist *, const char *);
json_t		*strlist_to_json(const struct strlist *);
void		 strlist_from_json_text(struct strlist *, const char *);

/* json-member.c */
typedef void	 (*json_member_cb)(void *, const char *, size_t, const char *,
		     size_t);
int		 json_members(const char *, size_t, json_member_cb, void *);
int		 json_member(const char *, size_t, const char *,
		     const char **, size_t *);
long long	 json_uint(const char *, size_t);

/* addr.c */
struct cidr {
	int	 family;
	uint8_t	 addr[16];
	int	 bits;
};
struct cidrlist {
	struct cidr	*v;
	size_t		 n;
};
int		 cidr_parse(const char *, struct cidr *);
int		 cidr_match(const struct cidr *, const struct sockaddr *);
int		 cidrlist_parse(const struct strlist *, struct cidrlist *,
		     char **);
int		 cidrlist_match(const struct cidrlist *, const struct sockaddr *);
int		 cidrlist_match_str(const struct cidrlist *, const char *);
void		 cidrlist_free(struct cidrlist *);
int		 addr_parse(const char *, struct sockaddr_storage *);
int		 sockaddr_str(const struct sockaddr *, char *, size_t);
int		 sockaddr_group(const struct sockaddr *, char *, size_t);
int		 hostport_split(const char *, char **, char **);
int		 url_is_loopback_host(const char *);
int		 url_check_outbound(const char *, char **);

/* clock.c */
double		 now_mono(void);
time_t		 now_wall(void);
void		 time_iso8601(time_t, char *, size_t);
int		 parse_duration(const char *, long long *);

/* tz.c */
struct tz;
struct tz	*tz_load(const char *, const char *, char **);
void		 tz_free(struct tz *);
const char	*tz_name(const struct tz *);
int32_t		 tz_offset(const struct tz *, int64_t);
int64_t		 tz_local_to_utc(const struct tz *, int64_t);
long long	 tz_days_from_civil(long long, int, int);
void		 tz_civil_from_days(long long, long long *, int *, int *);
long long	 tz_floor_div(long long, long long);
int		 tz_weekday(long long);

/* addrlimit.c */
struct addr_limit;
struct addr_limit *addr_limit_new(size_t);
int		 addr_limit_take(struct addr_limit *, const char *, double, int,
		     double, long *);
int		 addr_limit_spent(struct addr_limit *, const char *, double,
		     int, double, long *, int *);
size_t		 addr_limit_count(const struct addr_limit *);
void		 addr_limit_free(struct addr_limit *);

/* utf8.c */
size_t		 utf8_seq(const unsigned char *, size_t);

/* text.c */
int		 glob_match(const char *, const char *);
int		 str_is_printable(const char *, size_t);
char		*utf8_sanitize(const char *);
int		 cookie_find(const char *, const char *, char *, size_t);
char		*pct_decode_segment(const char *, size_t, size_t);
size_t		 http_token_len(const char *);

/* num.c */
size_t		 num_lld(char *, long long);
size_t		 num_fixed6(char *, size_t, double);

/* crypto.c (the rest is in crypto.h) */
void		 random_id(char *, size_t);

/* config.c */
enum config_type {
	CT_BOOL,
	CT_INT,
	CT_DURATION,
	CT_STRING,
	CT_ENUM,
	CT_LIST,
	CT_SECRET,
	CT_PATH,
	CT_OBJECT,
};
#define CK_RESTART	0x01	/* change needs a restart, not a reload */
#define CK_SECRET_PERMS	0x02	/* file must not be group/world readable */
#define CK_HIDDEN	0x04	/* internal; not documented */
enum config_scope {
	CS_ROOT,
	CS_PROVIDER,
	CS_ISSUER,
	CS_RULE,
	CS_ALIAS,
	CS_PRICE,
	CS_CAP,
	CS_AWSROLE,
};
struct config_key {
	const char		*name;
	enum config_type	 type;
	enum config_scope	 scope;
	size_t			 off;
	const char		*def;
	long long		 min;
	long long		 max;
	const char *const	*choices;
	int			 flags;
	const char		*help;
};
extern const struct config_key	config_keys[];
extern const size_t		config_nkeys;

/* Keys holding a collection of objects, each checked against a scope. */
struct config_collection {
	const char		*name;		/* oauth.providers */
	const char		*pattern;	/* oauth.providers.* */
	enum config_scope	 scope;
	int			 is_map;	/* map of names, or a list */
	size_t			 elem_size;
	size_t			 off_array;
	size_t			 off_count;
	size_t			 off_name;
	size_t			 off_where;
};
extern const struct config_collection	config_collections[];
extern const size_t			config_ncollections;
struct config_origin {
	char	*name;
	char	*where;
};

struct listen_addr {
	char	*host;
	char	*port;
};
struct config_error {
	char	*where;
	char	*msg;
};
struct config_errors {
	struct config_error	*v;
	size_t			 n;
};
enum provider_kind {
	PROVIDER_CUSTOM,
	PROVIDER_GOOGLE,
	PROVIDER_GITHUB,
	PROVIDER_MICROSOFT,
	PROVIDER_GITLAB,
	PROVIDER_AUTH0,
	PROVIDER_OKTA,
	PROVIDER_COGNITO,
};

/* One entry of oauth.providers. */
struct provider_config {
	char		*name;
	char		*where;
	char		*client_id;
	char		*client_secret;
	char		*display_name;
	char		*issuer;
	char		*authorization_url;
	char		*token_url;
	char		*user_info_url;
	char		*jwks_uri;
	char		*emails_url;
	char		*orgs_url;
	struct strlist	 scopes;
	char		*redirect_uri;
	char		*user_id_field;
	char		*email_field;
	char		*email_verified_field;
	char		*name_field;
	char		*groups_field;
	int		 pkce;
	int		 trust_email;
	int		 token_auth;	/* 0 auto, 1 basic, 2 post */
	char		*tenant_id;
	char		*instance_url;
	char		*domain;
	char		*authorization_server;
	char		*region;
	char		*user_pool_id;
	struct strlist	 algorithms;
	/* resolved by oauth_config_check() */
	int		 kind;		/* enum provider_kind */
	int		 oidc;
	int		 multi_tenant;
};

/* One entry of oauth.trusted_issuers. */
struct issuer_config {
	char		*where;
	char		*issuer;
	struct strlist	 audience;
	char		*jwks_uri;
	struct strlist	 algorithms;
	char		*token_use;
	char		*subject_claim;
	char		*email_claim;
	char		*groups_claim;
	char		*provider_name;
};

/* One entry of models.aliases. */
struct model_alias {
	char		*where;
	char		*id;		/* an Anthropic model id */
	char		*bedrock_id;	/* a Bedrock id, or another alias */
	char		*display_name;
};

/* Prices in micro-dollars per million tokens (budget.c). */
struct price {
	long long	 input;
	long long	 output;
	long long	 cache_read;
	long long	 cache_write;		/* 5-minute cache writes */
	long long	 cache_write_1h;
};

/* One entry of models.prices: dollars per million tokens, as text. */
struct model_price {
	char		*where;
	char		*model;		/* a glob on the Bedrock id */
	char		*input;
	char		*output;
	char		*cache_read;
	char		*cache_write;
	char		*cache_write_1h;
	struct price	 p;		/* derived */
};

/* One entry of budgets.caps. */
#define BUDGET_SCOPE_USER	0
#define BUDGET_SCOPE_GROUP	1
#define BUDGET_SCOPE_KEY	2
#define BUDGET_SCOPE_GLOBAL	3
#define BUDGET_WIN_DAY		0
#define BUDGET_WIN_WEEK		1
#define BUDGET_WIN_MONTH	2
#define BUDGET_WIN_ROLLING	3
struct budget_cap {
	char		*where;
	char		*name;
	int		 scope;		/* BUDGET_SCOPE_* */
	struct strlist	 match;		/* globs; empty: all */
	int		 window;	/* BUDGET_WIN_* */
	long long	 days;		/* rolling: N */
	char		*limit_usd;
	char		*soft_usd;
	long long	 limit_tokens;	/* 0: none */
	long long	 limit;		/* derived: micro-dollars, -1 none */
	long long	 soft;		/* derived: micro-dollars, -1 none */
};

/* One entry of models.rules. */
struct model_rule {
	char		*where;
	struct strlist	 groups;
	struct strlist	 emails;
	struct strlist	 domains;
	struct strlist	 allow;
	struct strlist	 deny;
};

/* One entry of aws.credential_roles. */
struct aws_credential_role {
	char		*where;
	char		*name;
	char		*role_arn;
	struct strlist	 groups;
	struct strlist	 emails;
	struct strlist	 domains;
	long long	 duration;
	char		*session_policy;
};

/* A secret key given as KEY_arn: read from AWS Secrets Manager. */
struct config_arn {
	char		*name;		/* the secret key, "jwt.secret" */
	char		*arn;		/* as written, with any "#json-key" */
	char		*where;
};

struct config {
	int		 refcnt;
	char		*path;
	int		 file_mode;
	struct config_origin *origins;
	size_t		 norigins;
	struct config_arn *arns;	/* KEY_arn keys, in file order */
	size_t		 narns;

	/* server */
	char		*server_host;
	long long	 server_port;
	struct strlist	 server_listen;
	char		*server_public_url;
	char		*server_tls_cert_file;
	char		*server_tls_key_file;
	struct strlist	 server_trusted_proxies;
	long long	 server_max_body_bytes;
	long long	 server_max_header_bytes;
	long long	 server_max_connections;
	long long	 server_max_conns_per_client;
	long long	 to_header;
	long long	 to_body;
	long long	 to_idle;
	long long	 to_upstream_connect;
	long long	 to_upstream_first_byte;
	long long	 to_stream_idle;
	long long	 server_shutdown_timeout;

	/* tokens */
	int		 jwt_algorithm;
	char		*jwt_kms_key_id;
	long long	 jwt_kms_timeout;
	char		*jwt_key_file;
	char		*jwt_kek_file;
	char		*jwt_secret;
	char		*jwt_issuer;
	char		*jwt_audience;
	long long	 jwt_access_ttl;
	long long	 jwt_refresh_ttl;
	long long	 jwt_refresh_grace;
	char		*jwt_legacy_secret;
	int		 jwt_legacy_algorithm;
	char		*jwt_legacy_issuer;
	char		*jwt_legacy_audience;
	int		 apikeys_enabled;
	long long	 apikeys_default_ttl;
	long long	 apikeys_max_ttl;
	long long	 apikeys_max_per_user;

	/* the self-service page */
	int		 self_enabled;
	long long	 self_session_ttl;
	long long	 self_usage_days;

	long long	 cache_validation_ttl;
	long long	 cache_max_entries;
	long long	 cache_cleanup_interval;

	/* login */
	struct provider_config *providers;
	size_t		 nproviders;
	struct issuer_config *issuers;
	size_t		 nissuers;
	long long	 oauth_jwks_refresh;
	long long	 oauth_max_pending;
	long long	 oauth_timeout;
	struct strlist	 access_domains;
	struct strlist	 access_emails;
	struct strlist	 access_groups;
	struct strlist	 access_github_orgs;
	struct strlist	 access_tenants;
	int		 access_any_user;
	int		 access_require_verified;
	struct strlist	 access_admins;

	/* policy */
	int		 models_default;	/* 0 allow, 1 deny */
	struct model_rule *model_rules;
	size_t		 nmodel_rules;
	struct model_alias *model_aliases;
	size_t		 nmodel_aliases;
	int		 models_builtin_aliases;
	int		 models_map_unlisted;
	char		*models_region_prefix;
	long long	 rl_requests_per_minute;
	long long	 rl_tokens_per_minute;

	/* prices and budgets (budget.c) */
	struct model_price *model_prices;
	size_t		 nmodel_prices;
	int		 models_builtin_prices;
	struct budget_cap *budget_caps;
	size_t		 nbudget_caps;
	int		 budgets_unknown_model;	/* 0 refuse, 1 default */
	char		*budgets_default_input;
	char		*budgets_default_output;
	char		*budgets_default_cache_read;
	char		*budgets_default_cache_write;
	char		*budgets_default_cache_write_1h;
	char		*budgets_time_zone;
	long long	 budgets_bytes_per_token;
	long long	 budgets_default_max_tokens;
	struct price	 budgets_default_price;	/* derived */
	struct tz	*budgets_tz;		/* derived */

	/* aws */
	char		*aws_region;
	char		*aws_access_key_id;
	char		*aws_secret_access_key;
	char		*aws_session_token;
	char		*aws_profile;
	char		*aws_bearer_token;
	char		*aws_endpoint_url;
	char		*aws_ca_file;
	char		*aws_region_env;	/* AWS_REGION at load time */
	char		*aws_endpoint;		/* effective endpoint URL */
	struct strlist	 aws_request_metadata;
	char		*aws_user_role_arn;
	long long	 aws_user_role_duration;
	struct strlist	 aws_user_role_tags;
	long long	 aws_user_role_cache;
	char		*aws_user_role_external_id;
	struct aws_credential_role *aws_credential_roles;
	size_t		 naws_credential_roles;
	long long	 aws_credentials_per_minute;

	/* Anthropic and OpenAI front ends */
	int		 anthropic_upstream;	/* ANTHROPIC_UP_* */
	long long	 anthropic_ping_interval;
	char		*anthropic_invoke_version;
	int		 anthropic_count_tokens;	/* ANTHROPIC_COUNT_* */
	char		*anthropic_native_path;
	char		*anthropic_native_signing_name;
	int		 anthropic_native_betas;	/* 0 header, 1 body */
	int		 openai_enabled;
	char		*openai_path;
	char		*openai_signing_name;

	/* the device flow (RFC 8628) and Claude Code's gateway sign-in */
	int		 device_enabled;
	struct strlist	 device_clients;
	char		*device_default_client;
	long long	 device_access_ttl;
	long long	 device_code_ttl;
	long long	 device_interval;
	long long	 device_authorization_limit;
	long long	 device_page_limit;
	long long	 device_user_code_failures;
	long long	 device_limit_window;
	char		*gateway_settings_file;
	int		 gateway_available_models;
	int		 gateway_model_discovery;
	struct strlist	 gateway_env;
	json_t		*gateway_settings;	/* derived: the file's object */
	char		*gateway_telemetry_url;
	char		*gateway_telemetry_authorization;
	long long	 gateway_telemetry_timeout;
	long long	 gateway_telemetry_max_forwards;

	/* logging */
	int		 log_level;
	int		 log_format;
	int		 log_output;
	int		 log_access;

	/* metrics */
	int		 metrics_enabled;
	char		*metrics_path;
	struct strlist	 metrics_allow;

	/* database */
	char		*database_url;
	char		*database_password;
	long long	 database_pool_size;
	long long	 database_timeout;
	int		 database_migrate;	/* 0 auto, 1 off */
	long long	 database_offline_grace;
	long long	 database_busy_timeout;
	long long	 usage_retention_days;
	long long	 audit_retention_days;

	/* derived by config_finish() */
	char		*db_path;
	struct listen_addr *listen;
	size_t		 nlisten;
	struct cidrlist	 trusted_proxies;
	struct cidrlist	 metrics_acl;
	int		 public_https;
};
extern struct config	*cfg;
#define ANTHROPIC_UP_INVOKE	0
#define ANTHROPIC_UP_NATIVE	1
#define ANTHROPIC_COUNT_BEDROCK	0
#define ANTHROPIC_COUNT_NATIVE	1
#define ANTHROPIC_COUNT_OFF	2
#define LOG_OUT_STDERR	0
#define LOG_OUT_SYSLOG	1

struct config_define {
	char	*key;
	char	*value;
};
/* A value read from Secrets Manager for a KEY_arn key. */
struct config_secret {
	char			*name;		/* "jwt.secret" */
	char			*arn;
	char			*value;
};

struct config_source {
	const char		*path;		/* -f, or NULL for default */
	int			 path_explicit;
	struct config_define	*defines;	/* -D */
	size_t			 ndefines;
	char			**environ;
	/*
	 * The values of the KEY_arn keys (read by secrets.c); with
	 * arn_pending, a KEY_arn key without one holds a stand-in, so that
	 * the rest can be checked and its ARNs listed (config.arns).
	 */
	const struct config_secret *secrets;
	size_t			 nsecrets;
	int			 arn_pending;
	/* The modules' own checks (modules_config_check); required. */
	void			(*check)(struct config *,
				    struct config_errors *);
};
struct config	*config_load(const struct config_source *,
		     struct config_errors *);
struct config	*config_ref(struct config *);
void		 config_unref(struct config *);
void		 config_print(const struct config *, FILE *);
void		 config_errors_print(const struct config_errors *, FILE *);
void		 config_errors_free(struct config_errors *);
const struct config_key *config_key_find(const char *, enum config_scope);
int		 config_read_secret_file(const char *, char **, char **);
const char	*config_where(const struct config *, const char *);
int		 config_name_ok(const char *);
void		 config_add_error(struct config_errors *,
		     const struct config *, const char *, const char *, ...)
		     printflike(4, 5);

/* config-table.c */
void		 config_check_table(struct config *, struct config_errors *);
void		 config_free_table(struct config *);

/* metrics.c */
struct metric;
struct metric_series;
enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};
struct metric	*metric_new(const char *, enum metric_type, const char *);
void		 metric_add(struct metric *, const char *, double);
struct metric_series *metric_get(struct metric *, const char *);
void		 metric_series_add(struct metric_series *, double);
void		 metric_set(struct metric *, const char *, double);
void		 metric_observe(struct metric *, const char *, double);
void		 metric_label(char *, size_t, const char *, ...);
void		 metrics_init(void);
void		 metrics_request(const char *, int, double);
void		 metrics_render(struct evbuffer *);
long long	 process_rss_bytes(void);
extern struct metric	*m_requests, *m_request_seconds, *m_refreshes;
extern struct metric	*m_logins, *m_auth_failures;

/* server.c */
struct request;
struct server_conn;
int		 server_init(struct config *, char **);
int		 server_reload_prepare(struct config *, char **);
void		 server_reload_commit(struct config *);
void		 server_reload_abort(void);
void		 server_shutdown(void (*)(void));
void		 server_free(void);
int		 server_bound_port(int);

/* server-route.c */
#define RF_BEDROCK	0x0001	/* also served under /bedrock; Bedrock error shape */
#define RF_AUTH		0x0002	/* needs a credential */
#define RF_JWT_ONLY	0x0004	/* API keys are refused */
#define RF_NO_STORE	0x0008	/* Cache-Control: no-store */
#define RF_HTML		0x0010	/* HTML page: CSP and friends */
#define RF_METRICS	0x0020	/* metrics allow-list applies */
#define RF_BODY		0x0040	/* reads a request body */
#define RF_ANTHROPIC	0x0080	/* Anthropic error envelope */
#define RF_OPENAI	0x0100	/* OpenAI error envelope */
#define RF_API		(RF_ANTHROPIC | RF_OPENAI)
#define RF_SAME_ORIGIN	0x0200	/* HTML posting back: same-origin referrers */
struct route {
	const char	*name;
	int		 methods;
	const char	*pattern;
	void		(*handler)(struct request *);
	int		 flags;
};
void		 server_routes(const struct route *, size_t,
		     void (*)(struct request *));

/* server-request.c */
struct route_param {
	const char	*p;
	size_t		 len;
};
#define REQUEST_MAX_PARAMS 4
struct request {
	struct evhttp_request	*http;
	struct config		*cfg;
	const struct route	*route;
	struct server_conn	*conn;
	int			 refcnt;
	int			 replied;	/* final reply handed over */
	int			 logged;
	int			 client_gone;
	int			 http_owned;	/* evhttp disowned it */
	int			 streaming;

	char			 id[65];
	char			*path;		/* raw, without the query */
	char			*query;		/* raw, or NULL */
	const char		*method;
	struct route_param	 params[REQUEST_MAX_PARAMS];
	size_t			 nparams;
	char			 peer[48];	/* socket peer */
	char			 client[48];	/* after trusted proxies */
	union {
		struct sockaddr		sa;
		struct sockaddr_in	sin;
		struct sockaddr_in6	sin6;
	}			 client_sa;	/* AF_INET or AF_INET6 */
	int			 https;		/* as the client sees it */

	double			 t_start;
	int			 status;
	size_t			 bytes_out;

	/* filled by handlers for the access log */
	char			*log_user;
	char			*log_model;
	int			 upstream_status;
	long long		 tokens_in;
	long long		 tokens_out;
	const char		*log_error;

	struct principal	*principal;

	/* route state, freed with the request */
	void			*state;
	void			(*state_free)(void *);
	/* called once if the client goes away before the reply ends */
	void			(*on_abort)(struct request *);
	/* called when streamed output has been written out */
	void			(*on_drained)(struct request *);

	TAILQ_ENTRY(request)	 entry;
};
size_t		 server_inflight(void);
const char	*server_header(struct request *, const char *);
void		 server_set_header(struct request *, const char *, const char *);
int		 server_body(struct request *, const uint8_t **, size_t *);
/* Let the request body go (server_body() then finds it empty). */
void		 server_body_release(struct request *);
const char	*server_query(struct request *, const char *, char *, size_t);
json_t		*server_body_json(struct request *, const char **);
const char	*server_form(struct request *, const char *, char *, size_t);
int		 server_form_count(struct request *, const char *);
int		 server_content_type_is(struct request *, const char *);
int		 server_same_origin(struct request *);
void		 request_ref(struct request *);
void		 request_unref(struct request *);
void		 request_set_user(struct request *, const char *);
void		 request_set_model(struct request *, const char *, size_t);

/* server-reply.c */
void		 server_reply(struct request *, int, const char *,
		     struct evbuffer *);
void		 server_reply_json(struct request *, int, json_t *);
void		 server_reply_text(struct request *, int, const char *,
		     const char *);
void		 server_error_oauth(struct request *, int, const char *,
		     const char *);
void		 server_error_bedrock(struct request *, int, const char *,
		     const char *, ...) printflike(4, 5);
void		 server_error(struct request *, int, const char *,
		     const char *);
void		 server_error_api(struct request *, int, const char *,
		     const char *, ...) printflike(4, 5);
void		 server_stream_start(struct request *, int);
void		 server_stream_write(struct request *, struct evbuffer *,
		     void (*)(struct request *));
size_t		 server_stream_pending(struct request *);
void		 server_stream_end(struct request *);

/* server-auth.c */
int		 server_auth_bearer(struct request *, const char **);

/* route-health.c */
void		 route_health(struct request *);
void		 route_health_ready(struct request *);
void		 route_metrics(struct request *);
void		 route_not_found(struct request *);
void		 health_reset(void);
void		 health_register(const char *, int (*)(const char **));

/* route-static.c */
void		 route_static(struct request *);

/* route-table.c */
void		 routes_init(void);

/* route-auth.c */
void		 route_auth_refresh(struct request *);
void		 route_auth_logout(struct request *);
void		 route_auth_revoke(struct request *);
void		 route_auth_validate(struct request *);
void		 route_auth_me(struct request *);
void		 route_jwks(struct request *);
void		 route_oauth_metadata(struct request *);

/* route-login.c */
void		 route_login_page(struct request *);
void		 route_auth_providers(struct request *);
void		 route_auth_login(struct request *);
void		 route_auth_authorize(struct request *);
void		 route_auth_callback(struct request *);
void		 route_auth_token(struct request *);
void		 route_auth_login_any(struct request *);
void		 route_auth_token_any(struct request *);
void		 route_login_cookie(struct request *, const char *);

/* route-self.c */
int		 route_self_signed_in(struct request *, const char *,
		     json_t **);
void		 route_self_page(struct request *);
void		 route_self_key_new(struct request *);
void		 route_self_key_revoke(struct request *);
void		 route_self_session_end(struct request *);
void		 route_self_sign_out_all(struct request *);

/* route-bedrock.c */
void		 route_bedrock(struct request *);
void		 route_bidi_stream(struct request *);
void		 route_inference_profiles(struct request *);
int		 relay_init(struct config *, char **);
int		 relay_reload_prepare(struct config *, char **);
void		 relay_reload_commit(struct config *);
void		 relay_reload_abort(void);
void		 relay_free_all(void);
char		*relay_id_decode(const char *, size_t, size_t, const char **);
#define RELAY_STREAM	0x01	/* the answer is streamed */
#define RELAY_TO_SSE	0x02	/* event stream re-emitted as Anthropic SSE */
#define RELAY_SSE	0x04	/* SSE relayed as is, usage read on the side */
#define RELAY_COUNT	0x08	/* CountTokens answered as Anthropic's */
#define RELAY_OPENAI	0x10	/* OpenAI usage names */
#define RELAY_META	0x20	/* InvokeModel: request metadata header */
/* A call of another front end (route-anthropic.c, route-openai.c). */
struct relay_call {
	const char	*name;		/* operation: usage rows, metrics */
	int		 flags;		/* RELAY_* */
	const char	*model;		/* the Bedrock id: policy, usage */
	const char	*path;		/* below the endpoint's path */
	const char	*service;	/* SigV4 signing name */
	uint8_t		*body;		/* taken; NULL: the client's own */
	size_t		 body_len;
	const char *const *headers;	/* the client's headers forwarded */
};
void		 relay_call(struct request *, struct relay_call *);
char		*relay_model_check(const char *, const char **);

/* route-anthropic.c */
void		 route_anthropic_messages(struct request *);
void		 route_anthropic_count_tokens(struct request *);
void		 route_anthropic_models(struct request *);
void		 route_anthropic_model(struct request *);
json_t		*route_anthropic_model_ids(struct request *);

/* route-openai.c */
void		 route_openai(struct request *);

/* route-device.c */
void		 route_device_authorization(struct request *);
void		 route_device_page(struct request *);
void		 route_oauth_token(struct request *);

/* route-gateway.c */
void		 route_managed_settings(struct request *);
void		 route_telemetry(struct request *);
void		 gateway_config_check(struct config *, struct config_errors *);

/* route-aws.c */
void		 route_aws_credentials(struct request *);
void		 vend_free_all(void);

/* route-keys.c */
void		 route_api_keys(struct request *);
void		 route_api_key_delete(struct request *);

/* kms.c */
struct crypto_key;
struct kms_sign;
struct kms_fetch;
struct kms_fetch *kms_fetch(const char *, void (*)(int, const char *,
		     void *), void *);
void		 kms_fetch_cancel(struct kms_fetch *);
struct crypto_key *kms_public(const char *, int, const char **, char **);
struct kms_sign	*kms_sign(const char *, int, const uint8_t *,
		     void (*)(const uint8_t *, size_t, const char *, void *),
		     void *);
void		 kms_sign_cancel(struct kms_sign *);
void		 kms_free(void);

/* secrets.c */
struct secrets_read;
struct secrets_read *secrets_read(const struct config *, long,
		     void (*)(struct config_secret *, size_t, const char *,
		     void *), void *);
void		 secrets_cancel(struct secrets_read *);
void		 secrets_values_free(struct config_secret *, size_t);

/* oauth-config.c */
void		 oauth_config_check(struct config *, struct config_errors *);
const struct provider_config *provider_find(const struct config *,
		     const char *, size_t);

/* oauth.c */
#define OAUTH_LEEWAY	60	/* seconds a token's times may be off */
struct identity {
	char		*subject;
	char		*email;
	int		 email_verified;
	char		*name;
	struct strlist	 groups;
	struct strlist	 orgs;
	char		*tenant;
};
struct login;
/* How a sign-in starts (oauth_login_begin): in, then out. */
struct login_start {
	const struct provider_config *pc;
	int			 api;		/* API flow, or the browser's */
	const char		*redirect_uri;
	const uint8_t		*client_challenge;	/* API: S256, or NULL */
	const struct sockaddr	*client;	/* whose allowance it takes */
	const uint8_t		*device;	/* the device flow: the key of
						   the authorization, or NULL */
	char			*url;		/* the authorization URL */
	char			*sealed;	/* the cookie, or the API state */
	const char		*why;		/* it cannot start: why */
	const char		*problem;	/* the IdP's, if it is not in */
	long			 retry;		/* allowance spent: seconds */
};
/* What the IdP's redirect carried; NULL: missing, repeated, too long. */
struct login_redirect {
	const char		*state;
	const char		*cookie;	/* the browser's sealed sign-in */
	const char		*iss;
	int			 iss_absent;	/* no iss parameter at all */
	const char		*error;
	const char		*error_description;
	const char		*code;
};
/* What an API client posted to /auth/token. */
struct login_grant {
	const char		*state;
	const char		*code;
	const char		*redirect_uri;
	const char		*code_verifier;	/* or NULL */
};
/* A sign-in's verdict: a session (code 200), or a refusal. */
struct login_result {
	int			 api;		/* answer JSON, or a page */
	int			 device;	/* the device flow: no tokens */
	int			 code;		/* HTTP status */
	const char		*error;		/* refused: RFC 6749 error */
	const char		*title;		/* refused: a page's title */
	const char		*detail;	/* refused: what happened */
	const struct provider_config *pc;
	const struct user	*user;		/* signed in: who */
	json_t			*session;	/* signed in: tokens (borrowed) */
};
void		 identity_clear(struct identity *);
int		 oauth_init(struct config *, char **);
int		 oauth_reload(struct config *, char **);
void		 oauth_free(void);
int		 oauth_ready(const char **);
char		*oauth_callback_uri(const struct config *,
		     const struct provider_config *);
int		 oauth_login_begin(const struct config *, struct login_start *);
struct login	*oauth_login_new(const struct config *,
		     const struct provider_config *, int, const char *,
		     const char *, void (*)(const struct login_result *, void *),
		     void *);
void		 oauth_login_redirect(struct login *,
		     const struct login_redirect *);
void		 oauth_login_grant(struct login *, const struct login_grant *);
int		 oauth_login_cancel(struct login *);
void		 oauth_login_free(void *);

/* device.c */
#define DEVICE_CODE_PREFIX	"bsd_"
#define DEVICE_KEY_LEN		32	/* a row's key: a code's hash */
#define DEVICE_USER_CODE_LEN	8	/* letters */
#define DEVICE_USER_CODE_TEXT	10	/* "XXXX-XXXX" and the NUL */
/* Allowances of client addresses (device_limit_*). */
#define DEVICE_LIMIT_AUTHORIZE	0	/* device authorizations */
#define DEVICE_LIMIT_PAGE	1	/* verification page requests */
#define DEVICE_LIMIT_FAILURES	2	/* wrong user codes */
#define DEVICE_LIMIT_MAX	3
/* A poll's verdict (device_poll). */
#define DEVICE_ISSUED		0
#define DEVICE_PENDING		1	/* authorization_pending */
#define DEVICE_SLOW_DOWN	2
#define DEVICE_DENIED		3	/* access_denied */
#define DEVICE_EXPIRED		4	/* expired_token */
#define DEVICE_INVALID		5	/* invalid_grant */
#define DEVICE_FAILED		6	/* the database: try again */
/* A new device authorization's codes. */
struct device_grant {
	char		*device_code;
	char		 user_code[DEVICE_USER_CODE_TEXT];
	long long	 expires_in;
	long long	 interval;
};
/* What the verification page learns of a pending one. */
struct device_info {
	char		*client_id;
	char		*client_addr;
	time_t		 created;
	time_t		 expires;
};
int		 device_user_code_norm(const char *,
		     char [DEVICE_USER_CODE_TEXT]);
void		 device_user_key(const char *, uint8_t [DEVICE_KEY_LEN]);
int		 device_limit_take(const struct config *, int,
		     const struct sockaddr *, long *);
int		 device_limit_spent(const struct config *, int,
		     const struct sockaddr *, long *, int *);
void		 device_authorize(const struct config *, const char *,
		     const char *, void (*)(int, const struct device_grant *,
		     void *), void *);
void		 device_lookup(const uint8_t [DEVICE_KEY_LEN], const char *,
		     void (*)(int, const struct device_info *, const char *,
		     void *), void *);
void		 device_note_limited(const char *, long, void (*)(void *),
		     void *);
void		 device_approve(struct store_txn *,
		     const uint8_t [DEVICE_KEY_LEN], const char *, int *,
		     store_step_cb, void *);
void		 device_deny(struct store_txn *, const uint8_t [DEVICE_KEY_LEN],
		     const char *, store_step_cb, void *);
void		 device_poll(const struct config *, const char *,
		     const char *, const char *, void (*)(int, json_t *,
		     const char *, void *), void *);
void		 device_config_check(struct config *, struct config_errors *);
void		 device_maint(time_t);
void		 device_free(void);

/* oauth-trusted.c */
struct oidc_issuer;
int		 oauth_issuer_index(const struct config *, const char *);
struct oidc_issuer *oauth_issuer_ref(const struct issuer_config *);
int		 oauth_verify_external(const struct config *,
		     const struct issuer_config *, struct oidc_issuer *,
		     const char *, size_t, struct principal **, const char **,
		     int *, void (*)(void *), void *);

/* counters.c */
int		 counters_shared(void);
long long	 counters_window(long long, time_t);
void		 counters_get(const char *, long long, time_t, long long *,
		     long long *);
void		 counters_add(const char *, long long, time_t, long long,
		     long long);
void		 counters_get_at(const char *, long long, long long,
		     long long *, long long *);
void		 counters_add_at(const char *, long long, long long, long long,
		     long long);
void		 counters_sync(store_end_cb, void *);
void		 counters_maint(time_t);
void		 counters_free(void);

/* policy.c */
int		 access_allowed(const struct config *,
		     const struct provider_config *, const struct identity *,
		     const char **);
int		 policy_who(const struct config *, const struct strlist *,
		     const struct strlist *, const struct strlist *,
		     const struct principal *);
int		 policy_model_allowed(const struct config *,
		     const struct principal *, const char *, const char **);
int		 ratelimit_check(const struct config *, const struct principal *,
		     long long *);
void		 ratelimit_charge(const struct config *,
		     const struct principal *, long long);
void		 ratelimit_sweep(void);
void		 ratelimit_maint(time_t);
void		 ratelimit_free(void);
void		 policy_config_check(struct config *, struct config_errors *);

/* models.c */
const char	*models_prefix(const struct config *);
int		 models_resolve(const struct config *, const char *, char **,
		     const char **, const char **, const char **);
void		 models_list(const struct config *, void (*)(void *,
		     const char *, const char *, const char *, const char *),
		     void *);
void		 models_config_check(struct config *, struct config_errors *);

/* budget.c */
#define BUDGET_USD_LEN	32	/* "-123456789012.123456" and more */
/* A call's tokens, as the answer counted them. */
struct budget_tokens {
	long long	 input;
	long long	 output;
	long long	 cache_read;
	long long	 cache_write;		/* all cache writes */
	long long	 cache_write_1h;	/* of which to the 1-hour cache */
};
/* Why a call is refused (budget_admit). */
struct budget_refusal {
	int		 code;		/* 429, 400 (no price), 503 */
	int		 billing;	/* over a hard cap */
	const char	*cap;		/* its name, or NULL */
	time_t		 resets;	/* when the window moves on */
	char		 msg[512];
};
/* What the headers of an admitted call say (X-Budget-*). */
struct budget_note {
	int		 have;		/* a cap applied */
	char		 cap[64];	/* the tightest */
	char		 window[16];
	char		 remaining[BUDGET_USD_LEN];
	char		 resets[32];	/* ISO 8601 */
	char		 warn[256];	/* past a soft threshold: which */
};
struct budget_hold;
int		 budget_parse_usd(const char *, long long *);
void		 budget_usd(long long, char *, size_t);
int		 budget_price(const struct config *, const char *,
		     struct price *);
long long	 budget_cost(const struct price *, const struct budget_tokens *);
int		 budget_window(const struct budget_cap *, const struct tz *,
		     time_t, time_t *, time_t *);
long long	 budget_max_tokens(const uint8_t *, size_t);
int		 budget_admit(const struct config *, const struct principal *,
		     const char *, const uint8_t *, size_t, time_t,
		     struct budget_hold **, struct budget_note *,
		     struct budget_refusal *);
long long	 budget_settle(struct budget_hold *, const struct config *,
		     const struct principal *, const char *,
		     const struct budget_tokens *, time_t);
void		 budget_hold_free(struct budget_hold *);
json_t		*budget_me(const struct principal *, time_t);
void		 budget_config_check(struct config *, struct config_errors *);
int		 budget_init(struct config *, char **);
void		 budget_sync(void);
void		 budget_maint(time_t);
void		 budget_free(void);
int		 budget_ready(const char **);

/* usage.c */
struct usage {
	time_t		 ts;
	const char	*user_id;
	const char	*api_key_id;
	const char	*model;
	const char	*route;
	int		 status;
	long long	 input_tokens;
	long long	 output_tokens;
	long long	 cache_read_tokens;
	long long	 cache_write_tokens;
	long long	 cache_write_1h_tokens;
	long long	 cost_micros;	/* -1: no price */
	long long	 latency_ms;
	long long	 first_byte_ms;	/* -1: none */
	const char	*request_id;
	const char	*session_id;
	const char	*outcome;
};
void		 usage_record(const struct usage *);
void		 usage_flush(void);
void		 usage_set_tick(int);
void		 usage_purge(time_t, store_end_cb, void *);
int		 usage_init(struct config *, char **);
void		 usage_free(void);
size_t		 usage_queued(void);
void		 usage_by_day(const char *, time_t, int, void (*)(int,
		     json_t *, void *), void *);
extern struct metric	*m_tokens;

/* audit.c */
void		 audit_event(struct store_txn *, const char *, const char *,
		     const char *, const char *, json_t *, store_step_cb,
		     void *);
void		 audit_purge(time_t, store_end_cb, void *);
void		 audit_maint(time_t);

/* users.c */
struct user {
	char		*id;		/* provider:subject */
	char		*provider;
	char		*subject;
	char		*email;
	int		 email_verified;
	char		*name;
	struct strlist	 groups;
	char		*tenant;
	struct strlist	 orgs;
	int		 disabled;
	time_t		 revoked_before;
	time_t		 first_login;
	time_t		 last_login;
};
struct user_state {
	char		*id;
	int		 disabled;
	int		 denied;	/* the access policy no longer admits */
	time_t		 revoked_before;
};
/* A lookup's answer: rc, and the user (valid during the call) if found. */
typedef void	(*user_cb)(int, const struct user *, void *);
void		 user_clear(struct user *);
void		 user_copy(struct user *, const struct user *);
void		 user_get(const char *, user_cb, void *);
void		 user_find(const char *, user_cb, void *);
void		 user_upsert(struct store_txn *, struct user *,
		     store_step_cb, void *);
void		 user_ensure_local(const char *, user_cb, void *);
void		 user_set_disabled(struct store_txn *, const char *, int,
		     store_step_cb, void *);
void		 user_set_revoked_before(struct store_txn *, const char *,
		     time_t, store_step_cb, void *);
void		 users_load_state(store_end_cb, void *);
void		 users_sync(void);
int		 users_loaded(void);
int		 user_state_note(const struct user *);
const struct user_state *user_state(const char *);
void		 users_state_free(void);

/* principal.c */
enum principal_kind {
	PRINCIPAL_JWT,		/* our own access token */
	PRINCIPAL_LEGACY,	/* jwt.legacy */
	PRINCIPAL_API_KEY,
	PRINCIPAL_EXTERNAL,	/* oauth.trusted_issuers */
};
struct principal {
	int			 refcnt;
	enum principal_kind	 kind;
	char			*sub;		/* provider:subject */
	char			*provider;
	char			*email;
	int			 email_verified;
	char			*name;
	struct strlist		 groups;
	struct strlist		 scopes;
	char			*sid;		/* token family */
	char			*key_id;	/* API key */
	char			*key_name;	/* API key: its name, or NULL */
	struct strlist		 key_models;	/* API key model patterns */
	char			*tenant;
	time_t			 iat;
	time_t			 exp;
};
struct principal *principal_new(enum principal_kind);
struct principal *principal_ref(struct principal *);
void		 principal_unref(struct principal *);
int		 principal_has_scope(const struct principal *, const char *);
const char	*principal_revoked(const struct principal *);

/* aws-identity.c */
enum awsid_field {
	AWSID_USER,
	AWSID_EMAIL,
	AWSID_PROVIDER,
	AWSID_GROUPS,
	AWSID_API_KEY,
	AWSID_SESSION,
};
#define AWSID_NAME_MAX	64	/* RoleSessionName, SourceIdentity */
int		 awsid_spec_parse(const char *, char *, size_t, int *);
int		 awsid_meta_key_ok(const char *);
/* The identity's pairs of aws.request_metadata (a new object). */
json_t		*awsid_metadata(const struct config *,
		     const struct principal *, const char *);
/* The header's value: ours merged with the client's header (or NULL);
   allocated, or NULL with *why. */
char		*awsid_metadata_header(json_t *, const char *, const char **);
/* A Converse body with ours merged into its requestMetadata: 0 and *out
   (allocated), or -1 with *why. */
int		 awsid_metadata_body(json_t *, const uint8_t *, size_t,
		     uint8_t **, size_t *, const char **);
void		 awsid_session_name(const struct principal *,
		     char [AWSID_NAME_MAX + 1]);
/* The AssumeRole form for this user (allocated). */
char		*awsid_assume_form(const struct config *,
		     const struct principal *, const char *, long long,
		     const char *);
void		 awsid_config_check(struct config *, struct config_errors *);

/* aws-roles.c */
struct aws_creds;
struct awsrole_wait;
struct awsrole_op;
/* creds (a reference the callee owns) or NULL; the class is an enum
   aws_call_class (aws-call.h); msg is short and safe to show. */
typedef void	(*awsrole_cb)(struct aws_creds *, int, const char *, void *);
int		 awsrole_init(struct config *, char **);
void		 awsrole_commit(struct config *);
void		 awsrole_maint(time_t);
void		 awsrole_free(void);
/*
 * The user's per-user role session: 1 and *out (a reference) from the
 * cache; 0: cb(creds, class, msg, arg) on a later loop pass, *wait to
 * cancel it; -1: failed a moment ago, *cls says how (no call is made).
 */
int		 awsrole_user_get(const struct config *, struct principal *,
		     struct aws_creds **, int *, awsrole_cb, void *,
		     struct awsrole_wait **);
void		 awsrole_user_cancel(struct awsrole_wait *);
/* AWS refused these (expired): the next get assumes the role again. */
void		 awsrole_user_rejected(const struct principal *,
		     const struct aws_creds *);
/* Users cached now; *assumes: AssumeRole calls started so far. */
size_t		 awsrole_cached(unsigned long *);
/* One AssumeRole of an aws.credential_roles entry for this user. */
struct awsrole_op *awsrole_assume(const struct config *,
		     const struct principal *,
		     const struct aws_credential_role *, awsrole_cb, void *);
void		 awsrole_assume_cancel(struct awsrole_op *);

/* tokens.c */
enum jwt_alg {
	JWT_ALG_EDDSA = 0,
	JWT_ALG_ES256,
	JWT_ALG_RS256,
	JWT_ALG_HS256,
	JWT_ALG_PS256,		/* jwt.kms_key_id with an RSA key only */
};
#define SCOPE_INVOKE	"bedrock:invoke"
#define SCOPE_AWS_CREDENTIALS	"aws:credentials"
extern const char *const jwt_alg_choices[];
extern const char *const legacy_alg_choices[];
void		 tokens_config_check(struct config *, struct config_errors *);
int		 tokens_init(struct config *, char **);
int		 tokens_wait(char **);
void		 tokens_on_fatal(void (*)(const char *));
int		 tokens_loaded(const char **);
int		 tokens_fresh(const struct config *, const char **);
void		 tokens_free(void);
void		 tokens_sync(void);
void		 tokens_maint(time_t);

/* tokens-keys.c */
int		 tokens_reload_prepare(struct config *, char **);
void		 tokens_reload_commit(struct config *);
void		 tokens_reload_abort(void);
void		 tokens_reload_wait(store_end_cb, void *);
int		 tokens_check(struct config *, char **);
void		 tokens_signing_rotate(struct config *, void (*)(int,
		     const char *, void *), void *);
json_t		*tokens_jwks(void);
int		 tokens_ready(const char **);

/* tokens-jwt.c */
const char	*tokens_issuer(const struct config *);
int		 tokens_verify_jwt(const char *, size_t, struct principal **,
		     const char **);
/*
 * An access token signed ahead of the unit that hands it out (a Sign call
 * to KMS is never waited for inside a unit).
 */
struct tokens_pre {
	char		*sid;		/* a new session's */
	time_t		 exp;
	char		*token;
	char		*fp;		/* the claims it was signed for */
	char		*why;		/* why it could not be */
	int		 signing;
	void		(*cb)(int, const char *, void *);
	void		*cb_arg;
};
void		 tokens_pre_sign(struct tokens_pre *, const struct user *,
		     const char *, const struct strlist *, time_t,
		     void (*)(int, const char *, void *), void *);
int		 tokens_pre_ready(struct tokens_pre *, const struct user *,
		     const char *, const struct strlist *, time_t);
char		*tokens_pre_take(struct tokens_pre *);
int		 tokens_sign_remote(void);
void		 tokens_pre_clear(struct tokens_pre *);
int		 tokens_kms_check(const struct config *, char **);
void		 tokens_sign(const struct user *, const char *,
		     const struct strlist *, time_t,
		     void (*)(char *, const char *, void *), void *);
char		*tokens_mint(const struct user *, const char *,
		     const struct strlist *, time_t, time_t *);

/* tokens-refresh.c */
/* What a client is told when KMS cannot sign (503). */
#define TOKENS_SIGN_DOWN	"access tokens cannot be signed right now " \
				"(the token signing service, AWS KMS, is " \
				"unavailable); try again in a moment"
void		 tokens_session_pre(struct tokens_pre *, const struct user *,
		     long long, void (*)(int, const char *, void *), void *);
void		 tokens_session_add(struct store_txn *, const struct user *,
		     struct tokens_pre *, const char *, const char *,
		     long long, json_t **, store_step_cb, void *);
void		 tokens_session_new(const struct user *, const char *,
		     const char *, void (*)(int, json_t *, void *), void *);
void		 tokens_mint_session(const struct user *,
		     const struct strlist *, long long, const char *,
		     void (*)(int, char *, void *), void *);
void		 tokens_refresh(const char *, const char *, void (*)(int,
		     json_t *, const char *, void *), void *);
void		 tokens_revoke_family(const char *, const char *,
		     const char *, const char *, const char *, void (*)(int,
		     void *), void *);
void		 tokens_revoke_own_family(const char *, const char *,
		     const char *, const char *, const char *, void (*)(int,
		     void *), void *);
void		 tokens_sessions_list(const char *, int, void (*)(int,
		     json_t *, void *), void *);
void		 tokens_revoke_refresh(const char *, const char *,
		     const char *, void (*)(int, void *), void *);
void		 tokens_revoke_user(const char *, const char *, int,
		     const char *, const char *, void (*)(int, int, void *),
		     void *);

/* tokens-revoked.c */
int		 tokens_family_revoked(const char *);

/* apikeys.c */
#define APIKEY_PREFIX	"bsk_"
void		 apikeys_load(store_end_cb, void *);
int		 apikeys_loaded(void);
void		 apikeys_free(void);
int		 apikey_user_ttl(const struct config *, long long,
		     long long *, const char **);
void		 apikey_create(const char *, const char *, const char *,
		     long long, const struct strlist *, const char *,
		     const char *, void (*)(int, char *, json_t *,
		     const char *, void *), void *);
void		 apikey_list(const char *, void (*)(int, json_t *, void *),
		     void *);
void		 apikey_revoke(const char *, const char *, const char *,
		     const char *, const char *, void (*)(int, void *), void *);
void		 apikeys_revoke_family(struct store_txn *, const char *,
		     const char *, const char *, const char *, int *,
		     store_step_cb, void *);
void		 apikeys_revoke_user(struct store_txn *, const char *,
		     const char *, const char *, const char *, int *,
		     store_step_cb, void *);
void		 apikey_revoke_by_secret(const char *, const char *,
		     const char *, void (*)(int, void *), void *);
int		 apikey_verify(const char *, struct principal **,
		     const char **);
/* Scopes (bedrock:invoke, aws:credentials) added to a new key's model
   patterns, as apikey_create() takes them; -1 with *why if unknown. */
int		 apikey_scopes_encode(struct strlist *,
		     const struct strlist *, const char **);
void		 apikeys_flush_last_used(store_end_cb, void *);
void		 apikeys_sync(void);
void		 apikeys_maint(time_t);
void		 apikeys_purge(time_t, store_end_cb, void *);

/* auth.c */
struct auth_wait;
struct auth_result {
	struct principal	*p;		/* accepted */
	int			 code;		/* refused: 401 or 403 */
	const char		*label;		/* refused: metric label */
	char			 why[256];
};
int		 auth_check(const struct config *, int, const char *,
		     const char *, struct auth_result *, struct auth_wait **,
		     void (*)(void *), void *);
int		 auth_still_valid(struct auth_result *, int);
void		 auth_wait_cancel(struct auth_wait **, void *);
void		 auth_result_clear(struct auth_result *);
void		 auth_cache_clear(void);
void		 auth_cache_sweep(void);

/* modules.c */
int		 modules_init(struct config *, char **);
int		 modules_prepare(struct config *, char **);
void		 modules_commit(struct config *);
void		 modules_abort(void);
int		 modules_check(struct config *, char **);
void		 modules_config_check(struct config *, struct config_errors *);
void		 modules_free(void);
int		 modules_failed(void);

/* cmd.c */
#define CMD_CLIENT	0x01	/* the laptop's: no daemon configuration */
struct command {
	const char	*name;
	const char	*sub;
	const char	*args;
	int		(*fn)(int, char **);
	const char	*help;
	int		 flags;
};
extern const struct command	commands[];
extern const size_t		ncommands;
const struct command *command_find(int, char **);
int		 command_exec(const struct command *, int, char **);
int		 command_run(int, char **);

/* client-login.c */
int		 client_cmd_login(int, char **);
int		 client_cmd_logout(int, char **);

/* client-token.c */
int		 client_cmd_token(int, char **);
int		 client_cmd_status(int, char **);
int		 client_cmd_aws_credentials(int, char **);

/* client-relay.c */
int		 client_cmd_relay(int, char **);

/* client-setup.c */
int		 client_cmd_setup_claude_code(int, char **);

/* cmd-print.c */
void		 cmd_cell(const char *, int, const char *);

/* cmd-store.c */
int		 cmd_store_open(char **);
int		 cmd_store_open_url(const char *, const char *, char **);
void		 cmd_store_close(void);

/* cmd-db.c */
int		 cmd_db_copy(int, char **);

/* cmd-budget.c */
int		 cmd_budget_list(int, char **);
int		 cmd_budget_show(int, char **);
int		 cmd_budget_set(int, char **);

/* cmd-usage.c */
int		 cmd_usage(int, char **);

/* base.c: process-wide state */
extern int	 bsp_debug;
extern int	 bsp_verbose;
extern time_t	 bsp_start_time;
void		 bsp_closefrom(int);

/* main.c */
void		 bsp_exit_soon(int);

#endif /* BSP_H */
