/*
 * device.c: the device authorization grant (RFC 8628) in the database:
 * the device authorizations a client starts, what the verification page
 * learns of a user code, a sign-in approving one for its user, and the
 * client's polls that redeem an approved one for a session. The HTTP side
 * (forms, pages, JSON, CSRF) is route-device.c's; the sign-in itself is
 * oauth.c's, which calls device_approve() and device_deny() inside the
 * unit that records its verdict.
 *
 * A device authorization is a row of device_codes keyed by the hash of
 * its device code ("bsd_" and 256 random bits, shown once, to the client)
 * with the hash of its user code (eight letters of a 20-letter alphabet
 * without vowels, RFC 8628 section 6.1, shown as XXXX-XXXX) unique beside
 * it. It lives device.code_ttl seconds (ten minutes by default); then a
 * poll is told expired_token, and an hour later housekeeping deletes it.
 * It is pending until a sign-in approves it for a user (approved) or the
 * access policy refuses that user (denied); the first poll after the
 * approval claims it (used: a conditional UPDATE, so of two polls, in one
 * daemon or two, one wins) and starts the user's session in the same
 * unit, whose access tokens live device.access_token_ttl seconds. A
 * device code presented again after that is refused and audited.
 *
 * A client polling more often than its interval (with a second of slack)
 * is told slow_down; a poll records its time in the row, so the interval
 * holds across daemons sharing the database. The allowances of client
 * addresses (device authorizations, verification page requests, wrong
 * user codes) are kept in memory, per daemon (addrlimit.c).
 *
 * Each operation is a unit with one step function (auth_step, look_step,
 * poll_step) that runs a statement and takes its answer.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"

#define DEVICE_TRIES		3	/* a user code taken, or a claim lost */
#define DEVICE_KEEP		3600	/* seconds an expired row is kept */
#define DEVICE_LIMIT_KEYS	65536	/* client addresses remembered */
#define DEVICE_POLL_SLACK	1	/* seconds a poll may come early */

/* 20 consonants: no vowels (no words), no look-alikes of digits. */
static const char	 device_alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";

static struct store_stmt st_insert = STORE_STMT("INSERT INTO device_codes "
    "(device_hash, user_hash, client_id, client_addr, created, expires, "
    "poll_interval, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')");
static struct store_stmt st_lookup = STORE_STMT("SELECT status, client_id, "
    "client_addr, created, expires FROM device_codes WHERE user_hash = $1");
static struct store_stmt st_approve = STORE_STMT("UPDATE device_codes SET "
    "status = 'approved', user_id = $1, decided = $2 WHERE user_hash = $3 "
    "AND status = 'pending' AND expires > $2");
static struct store_stmt st_deny = STORE_STMT("UPDATE device_codes SET "
    "status = 'denied', user_id = $1, decided = $2 WHERE user_hash = $3 AND "
    "status = 'pending'");
static struct store_stmt st_get = STORE_STMT("SELECT status, client_id, "
    "expires, poll_interval, polled, user_id FROM device_codes WHERE "
    "device_hash = $1");
static struct store_stmt st_polled = STORE_STMT("UPDATE device_codes SET "
    "polled = $1 WHERE device_hash = $2");
static struct store_stmt st_claim = STORE_STMT("UPDATE device_codes SET "
    "status = 'used', used_at = $1, polled = $1 WHERE device_hash = $2 AND "
    "status = 'approved'");
static struct store_stmt st_refuse = STORE_STMT("UPDATE device_codes SET "
    "status = 'denied', decided = $1 WHERE device_hash = $2 AND status = "
    "'approved'");
static struct store_stmt st_user = STORE_STMT("SELECT id, provider, "
    "subject, email, email_verified, name, groups, tenant, orgs, disabled "
    "FROM users WHERE id = $1");
static struct store_stmt st_purge = STORE_STMT("DELETE FROM device_codes "
    "WHERE expires < $1");

static struct {
	struct addr_limit	*limits[DEVICE_LIMIT_MAX];
	int			 purging;
} dv;

/*
 * A user code as someone typed it (any case, with or without the dash,
 * spaces around) in its canonical form: eight letters of the alphabet,
 * "XXXX-XXXX". 0, or -1 if it cannot be one.
 */
int
device_user_code_norm(const char *in, char out[DEVICE_USER_CODE_TEXT])
{
	size_t	n = 0, i;
	char	c, l[DEVICE_USER_CODE_LEN];

	for (i = 0; in[i] != '\0'; i++) {
		c = in[i];
		if (c == '-' || c == ' ' || c == '\t')
			continue;
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (strchr(device_alphabet, c) == NULL || c == '\0' ||
		    n >= sizeof l)
			return (-1);
		l[n++] = c;
	}
	if (n != sizeof l)
		return (-1);
	snprintf(out, DEVICE_USER_CODE_TEXT, "%.4s-%.4s", l, l + 4);
	return (0);
}

/* The key of a user code's row: the hash of its canonical form. */
void
device_user_key(const char *code, uint8_t key[DEVICE_KEY_LEN])
{
	crypto_hash_token(code, key);
}

/* A fresh user code, "XXXX-XXXX". */
static void
device_user_code_new(char out[DEVICE_USER_CODE_TEXT])
{
	uint8_t	r[32];
	char	l[DEVICE_USER_CODE_LEN];
	size_t	n = 0, i;

	while (n < sizeof l) {
		crypto_random(r, sizeof r);
		/* 240 is 12 * 20: no letter more likely than another. */
		for (i = 0; i < sizeof r && n < sizeof l; i++)
			if (r[i] < 240)
				l[n++] = device_alphabet[r[i] % 20];
	}
	snprintf(out, DEVICE_USER_CODE_TEXT, "%.4s-%.4s", l, l + 4);
	memzero(r, sizeof r);
	memzero(l, sizeof l);
}

/*
 * The allowances of client addresses. Take one from sa's allowance of
 * what (DEVICE_LIMIT_*): 0, or -1 with *retry the seconds to wait.
 */
static long long
device_limit_burst(const struct config *c, int what)
{
	switch (what) {
	case DEVICE_LIMIT_AUTHORIZE:
		return (c->device_authorization_limit);
	case DEVICE_LIMIT_PAGE:
		return (c->device_page_limit);
	default:
		return (c->device_user_code_failures);
	}
}

static struct addr_limit *
device_limits(int what)
{
	if (dv.limits[what] == NULL)
		dv.limits[what] = addr_limit_new(DEVICE_LIMIT_KEYS);
	return (dv.limits[what]);
}

int
device_limit_take(const struct config *c, int what,
    const struct sockaddr *sa, long *retry)
{
	char	key[64];

	(void)sockaddr_group(sa, key, sizeof key);
	return (addr_limit_take(device_limits(what), key, now_mono(),
	    (int)device_limit_burst(c, what), (double)c->device_limit_window,
	    retry));
}

/*
 * Is sa's allowance of what spent? 0, or -1 with *retry, and *first for
 * the first refusal since it ran out.
 */
int
device_limit_spent(const struct config *c, int what,
    const struct sockaddr *sa, long *retry, int *first)
{
	char	key[64];

	(void)sockaddr_group(sa, key, sizeof key);
	return (addr_limit_spent(device_limits(what), key, now_mono(),
	    (int)device_limit_burst(c, what), (double)c->device_limit_window,
	    retry, first));
}

/*
 * Starting a device authorization: a row with fresh codes, again with
 * others if its user code is taken.
 */
struct auth_op {
	char			*client_id;
	char			*client_addr;
	long long		 ttl;
	long long		 interval;
	int			 tries;
	int			 inserted;	/* the row's INSERT ran */
	struct device_grant	 g;
	uint8_t			 dkey[DEVICE_KEY_LEN];
	uint8_t			 ukey[DEVICE_KEY_LEN];
	void			(*cb)(int, const struct device_grant *,
				    void *);
	void			*arg;
};

static void	auth_step(struct store_txn *, int, void *);

static void
auth_end(struct auth_op *op, int rc)
{
	op->cb(rc, rc == 0 ? &op->g : NULL, op->arg);
	freezero_str(op->g.device_code);
	memzero(&op->g, sizeof op->g);
	free(op->client_id);
	free(op->client_addr);
	free(op);
}

static void
auth_committed(int status, void *arg)
{
	struct auth_op	*op = arg;

	if (status != STORE_OK)
		log_warnx("device authorization: cannot record it");
	auth_end(op, status == STORE_OK ? 0 : -1);
}

static void
auth_step(struct store_txn *t, int status, void *arg)
{
	struct auth_op	*op = arg;
	time_t		 now = now_wall();

	if (t != NULL && status == STORE_CONFLICT && op->inserted &&
	    ++op->tries < DEVICE_TRIES) {
		/* A user code another authorization has: new codes. */
		store_rollback(t);
		op->inserted = 0;
		store_begin(STORE_WRITE, auth_step, op);
		return;
	}
	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		log_warnx("device authorization: the database failed");
		auth_end(op, -1);
		return;
	}
	if (op->inserted) {
		store_commit(t, auth_committed, op);
		return;
	}
	freezero_str(op->g.device_code);
	op->g.device_code = crypto_new_secret(DEVICE_CODE_PREFIX);
	device_user_code_new(op->g.user_code);
	crypto_hash_token(op->g.device_code, op->dkey);
	device_user_key(op->g.user_code, op->ukey);
	op->g.expires_in = op->ttl;
	op->g.interval = op->interval;
	{
		struct store_param p[] = {
			SP_BLOB(op->dkey, sizeof op->dkey),
			SP_BLOB(op->ukey, sizeof op->ukey),
			SP_TEXT(op->client_id), SP_TEXT(op->client_addr),
			SP_INT(now), SP_INT(now + (time_t)op->ttl),
			SP_INT(op->interval),
		};

		op->inserted = 1;
		store_exec(t, &st_insert, p, nitems(p), NULL, auth_step, op);
	}
}

/*
 * A new device authorization for client_id, asked from client_addr:
 * cb(0, grant, arg) with its codes (valid during the call), or cb(-1,
 * NULL, arg) if it cannot be recorded.
 */
void
device_authorize(const struct config *c, const char *client_id,
    const char *client_addr, void (*cb)(int, const struct device_grant *,
    void *), void *arg)
{
	struct auth_op	*op;

	op = xcalloc(1, sizeof *op);
	op->client_id = xstrdup(client_id);
	op->client_addr = client_addr != NULL ? xstrdup(client_addr) : NULL;
	op->ttl = c->device_code_ttl;
	op->interval = c->device_interval;
	op->cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, auth_step, op);
}

/*
 * The verification page's look at a user code: is it a live, pending
 * authorization? A code that is not is refused with an audit row, in the
 * same unit.
 */
enum look_state {
	LK_BEGIN,
	LK_ROW,
	LK_AUDIT,
	LK_COMMIT,
};

struct look_op {
	enum look_state		 state;
	uint8_t			 key[DEVICE_KEY_LEN];
	char			*client;
	int			 found;
	char			*status;
	struct device_info	 info;
	const char		*why;
	void			(*cb)(int, const struct device_info *,
				    const char *, void *);
	void			*arg;
};

static void	look_step(struct store_txn *, int, void *);

static void
look_end(struct look_op *op, int rc)
{
	op->cb(rc, rc == 0 ? &op->info : NULL, op->why, op->arg);
	free(op->status);
	free(op->info.client_id);
	free(op->info.client_addr);
	free(op->client);
	free(op);
}

static void
look_row(const struct store_row *r, void *arg)
{
	struct look_op	*op = arg;

	op->found = 1;
	free(op->status);
	free(op->info.client_id);
	free(op->info.client_addr);
	op->status = store_strdup(r, 0);
	op->info.client_id = store_strdup(r, 1);
	op->info.client_addr = store_strdup(r, 2);
	op->info.created = (time_t)store_int(r, 3);
	op->info.expires = (time_t)store_int(r, 4);
}

static void
look_committed(int status, void *arg)
{
	struct look_op	*op = arg;

	if (status != STORE_OK)
		log_warnx("device verification: cannot record a refusal");
	look_end(op, status == STORE_OK ? -1 : -3);
}

static void
look_step(struct store_txn *t, int status, void *arg)
{
	struct look_op	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		look_end(op, -3);
		return;
	}
	switch (op->state) {
	case LK_BEGIN:
		op->state = LK_ROW;
		{
			struct store_param p[] = { SP_BLOB(op->key,
			    sizeof op->key) };

			store_exec(t, &st_lookup, p, nitems(p), look_row,
			    look_step, op);
		}
		return;
	case LK_ROW:
		if (op->found && op->status != NULL &&
		    strcmp(op->status, "pending") == 0 &&
		    op->info.expires > now_wall()) {
			store_rollback(t);
			look_end(op, 0);
			return;
		}
		op->why = !op->found ? "no such code" :
		    op->info.expires <= now_wall() ? "the code has expired" :
		    "the code was already used or refused";
		op->state = LK_AUDIT;
		audit_event(t, "device_code_refused", NULL, NULL, op->client,
		    json_pack("{s:s}", "reason", op->why), look_step, op);
		return;
	case LK_AUDIT:
		op->state = LK_COMMIT;
		store_commit(t, look_committed, op);
		return;
	default:
		store_rollback(t);
		look_end(op, -3);
		return;
	}
}

/*
 * Look up a user code's row (its key) for the verification page, asked
 * from client. cb(0, info, NULL, arg): a live, pending authorization;
 * cb(-1, NULL, why, arg): none (no such code, expired, already used or
 * decided), audited; cb(-3, NULL, NULL, arg): the database failed.
 */
void
device_lookup(const uint8_t key[DEVICE_KEY_LEN], const char *client,
    void (*cb)(int, const struct device_info *, const char *, void *),
    void *arg)
{
	struct look_op	*op;

	op = xcalloc(1, sizeof *op);
	memcpy(op->key, key, sizeof op->key);
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, look_step, op);
}

/*
 * Audit that client's wrong user codes reached the limit (once per
 * lockout); cb(arg) when written or failed.
 */
struct limited_note {
	int	 state;
	char	*client;
	long	 retry;
	void	 (*cb)(void *);
	void	*arg;
};

static void
limited_note_end(int status, void *arg)
{
	struct limited_note	*op = arg;

	if (status != STORE_OK)
		log_warnx("device verification: cannot record a lockout");
	op->cb(op->arg);
	free(op->client);
	free(op);
}

static void
limited_note_step(struct store_txn *t, int status, void *arg)
{
	struct limited_note	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		limited_note_end(STORE_ERROR, op);
		return;
	}
	if (op->state == 0) {
		op->state = 1;
		log_warnx("device verification: too many wrong user codes from "
		    "%s; refused for %ld s", op->client != NULL ? op->client :
		    "-", op->retry);
		audit_event(t, "device_code_limited", NULL, NULL, op->client,
		    json_pack("{s:I}", "retry_after", (json_int_t)op->retry),
		    limited_note_step, op);
		return;
	}
	store_commit(t, limited_note_end, op);
}

void
device_note_limited(const char *client, long retry, void (*cb)(void *),
    void *arg)
{
	struct limited_note	*op;

	op = xcalloc(1, sizeof *op);
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->retry = retry;
	op->cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, limited_note_step, op);
}

/* Approving, inside the sign-in's unit: did the row change? */
struct approve_op {
	int		*approved;
	store_step_cb	 done;
	void		*arg;
};

static void
approve_step(struct store_txn *t, int status, void *arg)
{
	struct approve_op	*op = arg;
	store_step_cb		 done = op->done;
	void			*darg = op->arg;

	if (t != NULL && status == STORE_OK)
		*op->approved = store_changes(t) == 1;
	free(op);
	done(t, status, darg);
}

/*
 * In the unit t of a sign-in, approve the pending, live authorization of
 * the user code key for user_id: *approved says whether there was one to
 * approve (it may have expired or been decided meanwhile).
 */
void
device_approve(struct store_txn *t, const uint8_t key[DEVICE_KEY_LEN],
    const char *user_id, int *approved, store_step_cb done, void *arg)
{
	struct approve_op	*op;
	struct store_param	 p[] = { SP_TEXT(user_id), SP_INT(now_wall()),
				    SP_BLOB(key, DEVICE_KEY_LEN) };

	*approved = 0;
	op = xcalloc(1, sizeof *op);
	op->approved = approved;
	op->done = done;
	op->arg = arg;
	store_exec(t, &st_approve, p, nitems(p), NULL, approve_step, op);
}

/*
 * In the unit t of a refused sign-in, deny the pending authorization of
 * the user code key (user_id: who was refused, or NULL): its client's
 * next poll is told access_denied.
 */
void
device_deny(struct store_txn *t, const uint8_t key[DEVICE_KEY_LEN],
    const char *user_id, store_step_cb done, void *arg)
{
	struct store_param	 p[] = { SP_TEXT(user_id), SP_INT(now_wall()),
				    SP_BLOB(key, DEVICE_KEY_LEN) };

	store_exec(t, &st_deny, p, nitems(p), NULL, done, arg);
}

/*
 * A client's poll with its device code, as one unit: the row; then, by
 * what it says, a refusal, the time of the poll, or the claim of an
 * approved authorization, its user and a new session.
 */
enum poll_state {
	PS_BEGIN,
	PS_ROW,
	PS_POLLED,	/* the poll's time recorded */
	PS_USER,	/* the approved user */
	PS_REFUSE,	/* the user is gone or disabled: denied */
	PS_CLAIM,	/* the conditional UPDATE of the status */
	PS_SESSION,
	PS_AUDIT,	/* a replay's audit row */
	PS_COMMIT,
	PS_DONE,
};
static const char *const poll_state_names[] = {
	"BEGIN", "ROW", "POLLED", "USER", "REFUSE", "CLAIM", "SESSION", "AUDIT",
	"COMMIT", "DONE"
};

struct poll_op {
	enum poll_state	 state;
	uint8_t		 key[DEVICE_KEY_LEN];
	char		*client_id;	/* the client's, or NULL */
	char		*client;	/* its address */
	long long	 access_ttl;
	time_t		 now;
	int		 tries;
	/* the row */
	int		 found;
	char		*status;
	char		*row_client;
	time_t		 expires;
	long long	 interval;
	int		 polled_null;
	time_t		 polled;
	char		*user_id;
	/* the user */
	int		 user_found;
	int		 disabled;
	struct user	 u;
	/* the verdict */
	int		 rc;		/* DEVICE_* */
	const char	*why;
	json_t		*resp;
	void		(*cb)(int, json_t *, const char *, void *);
	void		*arg;
};

static void	poll_step(struct store_txn *, int, void *);

static void
poll_enter(struct poll_op *op, enum poll_state s)
{
	if (op->state != s)
		log_trace(TRACE_AUTH, "device poll: %s -> %s",
		    poll_state_names[op->state], poll_state_names[s]);
	op->state = s;
}

static void
poll_clear_row(struct poll_op *op)
{
	free(op->status);
	free(op->row_client);
	free(op->user_id);
	user_clear(&op->u);
	op->status = op->row_client = op->user_id = NULL;
	op->found = op->polled_null = op->user_found = op->disabled = 0;
	op->expires = op->polled = 0;
	op->interval = 0;
}

static void
poll_end(struct poll_op *op)
{
	poll_enter(op, PS_DONE);
	op->cb(op->rc, op->rc == DEVICE_ISSUED ? op->resp : NULL, op->why,
	    op->arg);
	if (op->rc != DEVICE_ISSUED)
		json_decref(op->resp);
	poll_clear_row(op);
	free(op->client_id);
	free(op->client);
	free(op);
}

/* The verdict is in: the unit, if any, rolled back. */
static void
poll_answer(struct poll_op *op, struct store_txn *t, int rc, const char *why)
{
	if (t != NULL)
		store_rollback(t);
	op->rc = rc;
	op->why = why;
	poll_end(op);
}

static void
poll_committed(int status, void *arg)
{
	struct poll_op	*op = arg;

	if (status != STORE_OK) {
		json_decref(op->resp);
		op->resp = NULL;
		log_warnx("device poll: the database failed");
		op->rc = DEVICE_FAILED;
		op->why = "cannot record the sign-in right now; try again";
	}
	poll_end(op);
}

static void
poll_row(const struct store_row *r, void *arg)
{
	struct poll_op	*op = arg;

	switch (op->state) {
	case PS_ROW:
		poll_clear_row(op);
		op->found = 1;
		op->status = store_strdup(r, 0);
		op->row_client = store_strdup(r, 1);
		op->expires = (time_t)store_int(r, 2);
		op->interval = store_int(r, 3);
		op->polled_null = store_null(r, 4);
		op->polled = (time_t)store_int(r, 4);
		op->user_id = store_null(r, 5) ? NULL : store_strdup(r, 5);
		break;
	case PS_USER:
		user_clear(&op->u);
		op->u.id = store_strdup(r, 0);
		op->u.provider = store_strdup(r, 1);
		op->u.subject = store_strdup(r, 2);
		op->u.email = store_null(r, 3) ? NULL : store_strdup(r, 3);
		op->u.email_verified = (int)store_int(r, 4);
		op->u.name = store_null(r, 5) ? NULL : store_strdup(r, 5);
		strlist_from_json_text(&op->u.groups, store_text(r, 6));
		op->u.tenant = store_null(r, 7) ? NULL : store_strdup(r, 7);
		strlist_from_json_text(&op->u.orgs, store_text(r, 8));
		op->disabled = (int)store_int(r, 9);
		op->user_found = 1;
		break;
	default:
		break;
	}
}

/* What the row says about the poll. */
static void
poll_judge(struct poll_op *op, struct store_txn *t)
{
	const struct user_state	*us;

	if (!op->found) {
		/* Anyone can send one: a log line, not an audit row. */
		log_info("device poll refused: unknown device code (from %s)",
		    op->client != NULL ? op->client : "-");
		poll_answer(op, t, DEVICE_INVALID, "device_code is not valid");
		return;
	}
	if (op->client_id != NULL && (op->row_client == NULL ||
	    strcmp(op->client_id, op->row_client) != 0)) {
		poll_answer(op, t, DEVICE_INVALID, "device_code was issued to "
		    "another client");
		return;
	}
	if (strcmp(op->status, "used") == 0) {
		op->rc = DEVICE_INVALID;
		op->why = "device_code was already used";
		poll_enter(op, PS_AUDIT);
		audit_event(t, "device_code_replayed", op->user_id, NULL,
		    op->client, json_pack("{s:s}", "client_id",
		    op->row_client), poll_step, op);
		return;
	}
	if (op->expires <= op->now) {
		poll_answer(op, t, DEVICE_EXPIRED, "device_code has expired; "
		    "start again");
		return;
	}
	if (strcmp(op->status, "denied") == 0) {
		poll_answer(op, t, DEVICE_DENIED, "the sign-in was refused");
		return;
	}
	if (strcmp(op->status, "approved") == 0 && op->user_id != NULL) {
		if ((us = user_state(op->user_id)) != NULL && (us->disabled ||
		    us->denied)) {
			op->why = us->disabled ? "user is disabled" :
			    "the access policy no longer admits this user";
			poll_enter(op, PS_REFUSE);
			{
				struct store_param p[] = { SP_INT(op->now),
				    SP_BLOB(op->key, sizeof op->key) };

				store_exec(t, &st_refuse, p, nitems(p), NULL,
				    poll_step, op);
			}
			return;
		}
		poll_enter(op, PS_USER);
		{
			struct store_param p[] = { SP_TEXT(op->user_id) };

			store_exec(t, &st_user, p, nitems(p), poll_row,
			    poll_step, op);
		}
		return;
	}
	/* Pending: too soon after the last poll, or not yet. */
	op->rc = !op->polled_null && op->now - op->polled <
	    (time_t)op->interval - DEVICE_POLL_SLACK ? DEVICE_SLOW_DOWN :
	    DEVICE_PENDING;
	op->why = op->rc == DEVICE_SLOW_DOWN ? "polling too often: wait "
	    "longer between requests" : "the user has not signed in yet";
	poll_enter(op, PS_POLLED);
	{
		struct store_param p[] = { SP_INT(op->now), SP_BLOB(op->key,
		    sizeof op->key) };

		store_exec(t, &st_polled, p, nitems(p), NULL, poll_step, op);
	}
}

static void
poll_step(struct store_txn *t, int status, void *arg)
{
	struct poll_op	*op = arg;
	const char	*email;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		log_warnx("device poll: the database failed");
		op->rc = DEVICE_FAILED;
		op->why = "cannot check the sign-in right now; try again";
		json_decref(op->resp);
		op->resp = NULL;
		poll_end(op);
		return;
	}
	switch (op->state) {
	case PS_BEGIN:
		poll_enter(op, PS_ROW);
		{
			struct store_param p[] = { SP_BLOB(op->key,
			    sizeof op->key) };

			store_exec(t, &st_get, p, nitems(p), poll_row,
			    poll_step, op);
		}
		return;
	case PS_ROW:
		poll_judge(op, t);
		return;
	case PS_POLLED:
	case PS_AUDIT:
		poll_enter(op, PS_COMMIT);
		store_commit(t, poll_committed, op);
		return;
	case PS_REFUSE:
		op->rc = DEVICE_DENIED;
		poll_enter(op, PS_COMMIT);
		store_commit(t, poll_committed, op);
		return;
	case PS_USER:
		if (!op->user_found || op->disabled) {
			op->why = !op->user_found ? "user no longer exists" :
			    "user is disabled";
			poll_enter(op, PS_REFUSE);
			{
				struct store_param p[] = { SP_INT(op->now),
				    SP_BLOB(op->key, sizeof op->key) };

				store_exec(t, &st_refuse, p, nitems(p), NULL,
				    poll_step, op);
			}
			return;
		}
		poll_enter(op, PS_CLAIM);
		{
			struct store_param p[] = { SP_INT(op->now),
			    SP_BLOB(op->key, sizeof op->key) };

			store_exec(t, &st_claim, p, nitems(p), NULL, poll_step,
			    op);
		}
		return;
	case PS_CLAIM:
		if (store_changes(t) != 1) {
			/* Another poll claimed it since we read it: again. */
			store_rollback(t);
			if (++op->tries >= DEVICE_TRIES) {
				op->rc = DEVICE_FAILED;
				op->why = "cannot check the sign-in right now; "
				    "try again";
				poll_end(op);
				return;
			}
			poll_clear_row(op);
			poll_enter(op, PS_BEGIN);
			op->now = now_wall();
			store_begin(STORE_WRITE, poll_step, op);
			return;
		}
		poll_enter(op, PS_SESSION);
		tokens_session_add(t, &op->u, op->client, "device_login",
		    op->access_ttl, &op->resp, poll_step, op);
		return;
	case PS_SESSION:
		/* Claude Code shows whose account it was (to confirm). */
		email = op->u.email;
		if (email != NULL && op->resp != NULL)
			json_object_set_new(op->resp, "email",
			    json_string(email));
		op->rc = DEVICE_ISSUED;
		op->why = NULL;
		poll_enter(op, PS_COMMIT);
		store_commit(t, poll_committed, op);
		return;
	default:
		poll_answer(op, t, DEVICE_FAILED, "internal error");
		return;
	}
}

/*
 * A client's poll with its device code (and its client_id, if it sent
 * one), from client: cb(DEVICE_ISSUED, response, NULL, arg) with the
 * session's tokens (the callback owns them), or cb(rc, NULL, why, arg)
 * with rc another DEVICE_*.
 */
void
device_poll(const struct config *c, const char *device_code,
    const char *client_id, const char *client, void (*cb)(int, json_t *,
    const char *, void *), void *arg)
{
	struct poll_op	*op;
	const char	*detail;

	if (strncmp(device_code, DEVICE_CODE_PREFIX,
	    strlen(DEVICE_CODE_PREFIX)) != 0 || strlen(device_code) != 47) {
		cb(DEVICE_INVALID, NULL, "device_code is not valid", arg);
		return;
	}
	if (!tokens_loaded(&detail)) {
		cb(DEVICE_FAILED, NULL, detail, arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	crypto_hash_token(device_code, op->key);
	op->client_id = client_id != NULL ? xstrdup(client_id) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->access_ttl = c->device_access_ttl;
	op->now = now_wall();
	op->cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, poll_step, op);
}

/* A client id: letters, digits and "._-", at most 64. */
static int
device_client_ok(const char *s)
{
	size_t	i, n = strlen(s);

	if (n == 0 || n > 64)
		return (0);
	for (i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    strchr("._-", s[i]) != NULL))
			return (0);
	}
	return (1);
}

/* device.*: the client ids. */
void
device_config_check(struct config *c, struct config_errors *errs)
{
	size_t	i;

	for (i = 0; i < c->device_clients.n; i++) {
		if (!device_client_ok(c->device_clients.v[i]))
			config_add_error(errs, c, "device.clients",
			    "device.clients: \"%s\" is not a client id "
			    "(letters, digits and ._-, at most 64)",
			    c->device_clients.v[i]);
	}
	if (c->device_default_client != NULL &&
	    *c->device_default_client != '\0' &&
	    !strlist_contains(&c->device_clients, c->device_default_client))
		config_add_error(errs, c, "device.default_client",
		    "device.default_client: \"%s\" is not one of "
		    "device.clients", c->device_default_client);
}

static void
device_purged(int status, void *arg)
{
	dv.purging = 0;
	if (status != STORE_OK)
		log_warnx("cannot purge expired device authorizations");
}

/* Housekeeping: rows expired an hour ago go. */
void
device_maint(time_t now)
{
	struct store_param	p[] = { SP_INT(now - DEVICE_KEEP) };

	if (dv.purging)
		return;
	dv.purging = 1;
	store_run(STORE_WRITE, &st_purge, p, nitems(p), NULL, device_purged,
	    NULL);
}

void
device_free(void)
{
	size_t	i;

	for (i = 0; i < nitems(dv.limits); i++) {
		addr_limit_free(dv.limits[i]);
		dv.limits[i] = NULL;
	}
}
