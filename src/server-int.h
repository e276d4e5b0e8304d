/*
 * server-int.h: what the files of the inbound server share, and nobody
 * else: a connection and its head gate's verdict, and each file's
 * functions for the others. The server's public surface is in bsp.h.
 *
 * The files call each other downwards only, in this order (a file may call
 * those listed after it):
 *
 *	server.c		listeners, TLS, accepting, start, reload, stop
 *	server-dispatch.c	a complete request: routed, checked, handled
 *	server-auth.c		the credential step of a request
 *	server-reply.c		replies, errors, streaming
 *	server-gate.c		the head gate; lingering after a refusal
 *	server-conn.c		connections: state, limits, hang-ups, drain
 *	server-request.c	request lifetime, ids, client address, input
 *	server-route.c		the route table and path matching
 *
 * Where a lower file must tell a higher one something, it takes a callback.
 */

#ifndef SERVER_INT_H
#define SERVER_INT_H

#include <sys/queue.h>

#include <event2/event_struct.h>
#include <uthash.h>

#define SERVER_JSON_MAX		65536
/* The largest body a request without a verified credential may carry. */
#define SERVER_UNAUTH_BODY_MAX	SERVER_JSON_MAX

struct bufferevent;
struct evbuffer_cb_entry;
struct evhttp_connection;
struct evhttp_request;

enum conn_state {
	CONN_NEW,	/* accepted, no request yet */
	CONN_WAITING,	/* keep-alive, between requests */
	CONN_KEYS,	/* head held while a trusted issuer's keys arrive */
	CONN_BODY,	/* request head read, body arriving */
	CONN_ACTIVE,	/* a request is being handled */
};

/*
 * What the head gate decided for the request whose head it read: made
 * when a head is read, handed to the request at dispatch, so that a
 * connection holds none of it while its request runs (a stream: minutes).
 */
struct server_gate {
	int			 done;		/* a verdict for the next request */
	int			 status;	/* refused before evhttp: a status */
	const char		*error;		/* ... its OAuth error code */
	char			 why[128];
	int			 mtype;		/* ... and what it asked for */
	char			*path;
	int			 flags;		/* its route's */
	struct auth_result	 auth;		/* RF_AUTH routes */
	struct auth_wait	*wait;
};

/* Connections per client address (IPv4, or IPv6 /64). */
struct server_client {
	char			 group[64];
	size_t			 n;
	UT_hash_handle		 hh;
};

/*
 * Work a connection has to do outside evhttp's callbacks, on one event
 * (a stream holds its connection for minutes; an event is 128 bytes).
 */
#define CONN_WORK_ADOPT	0x1	/* just accepted: limits */
#define CONN_WORK_GATE	0x2	/* a head to check, or its keys came */
struct server_conn {
	struct bufferevent		*bev;
	struct evhttp_connection	*evcon;
	struct request			*req;
	enum conn_state			 state;
	int				 tls;
	int				 killed;
	double				 t_wait;	/* state entered */
	double				 t_first;	/* first byte of head */
	double				 t_head;	/* head complete */
	/* The head gate's (server_gate_attach): a state entered; work. */
	void				(*gate_enter)(struct server_conn *);
	void				(*gate_run)(struct server_conn *);
	struct evbuffer			*head;		/* held from evhttp, */
	struct evbuffer_cb_entry	*input_cb;	/* gate's; both only */
							/* while it watches */
	size_t				 scanned;	/* no head end before */
	int				 in_gate;	/* our own input edits */
	int				 discard;	/* drop all input */
	struct server_gate		*gate;		/* or NULL */
	struct server_client		*client;
	struct event			 work_ev;	/* runs the work asked */
	int				 work;		/* CONN_WORK_* */
	struct event			 closed_ev;
	int				 closed_ev_on;
	UT_hash_handle			 hh;
	TAILQ_ENTRY(server_conn)	 entry;
};

/* server-dispatch.c */
void		 server_dispatch_cb(struct evhttp_request *, void *);

/* server-auth.c */
int		 server_auth_request(struct request *, struct auth_result *);
void		 server_auth_refuse(struct request *,
		     const struct auth_result *);

/* server-reply.c: its public functions are in bsp.h. */

/* server-gate.c */
void		 server_gate_attach(struct server_conn *);
void		 server_gate_next(struct server_conn *);
void		 server_gate_free(void);

/* server-conn.c */
extern int	 server_draining;
void		 server_conns_sweep_start(void);
void		 server_conns_drain(void (*)(void));
void		 server_conns_check_drained(void);
void		 server_conns_stop(void);
void		 server_conns_free(void);
struct server_conn *server_conn_new(struct bufferevent *, int);
struct server_conn *server_conn_find(struct bufferevent *);
void		 server_conn_enter(struct server_conn *, enum conn_state);
struct evhttp_connection *server_conn_evcon(struct server_conn *);
void		 server_conn_closed_cb(struct evhttp_connection *, void *);
void		 server_conn_kill(struct server_conn *, const char *);
void		 server_conn_work(struct server_conn *, int);
void		 server_conn_watch_hangup(struct server_conn *);
void		 server_conn_hangup_unwatch(struct server_conn *);
void		 server_conn_gate_clear(struct server_conn *);
struct server_gate *server_conn_gate(struct server_conn *);

/* server-request.c */
void		 server_requests_init(void (*)(void));
void		 server_requests_abandon(void);
void		 server_requests_free(void);
struct request	*server_request_new(struct evhttp_request *, int);
void		 server_request_start(struct request *, int,
		     const struct sockaddr *);
void		 server_request_finish(struct request *);
const char	*server_method_name(int);

/* server-route.c */
const struct route *server_route_find(const struct config *, const char *,
		     int, int *, const struct route **, struct request *);
void		 server_route_none(struct request *);

#endif /* SERVER_INT_H */
