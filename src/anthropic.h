/*
 * anthropic.h: the Anthropic Messages API in front of Bedrock: request
 * bodies rewritten for InvokeModel (as Anthropic's own Bedrock SDKs do)
 * and for bedrock-runtime's /anthropic route, Bedrock stream chunks
 * re-emitted as Anthropic server-sent events, and the error vocabulary.
 * Pure functions on buffers; tests/fuzz/fuzz-anthropic.c holds them to
 * jansson's reading of what they write.
 */

#ifndef ANTHROPIC_H
#define ANTHROPIC_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* What a Messages request body asks for (anthropic_read). */
struct anthropic_req {
	char		*model;		/* the body's model id */
	int		 stream;	/* "stream": true */
	int		 has_version;	/* anthropic_version present */
	int		 has_beta;	/* anthropic_beta present */
	int		 has_profile;	/* user_profile_id present */
};

/* What anthropic_rewrite() does to a body. */
struct anthropic_edit {
	int		 drop_model;	/* remove "model" (InvokeModel) */
	int		 drop_stream;	/* remove "stream" */
	const char	*model;		/* else: set "model" to this */
	const char	*version;	/* add anthropic_version if absent */
	const char	*betas;		/* add anthropic_beta (a header's
					   comma-separated list) if absent */
	const char	*profile;	/* add user_profile_id if absent */
	int		 max_tokens;	/* add max_tokens: 1 if absent */
};

#define ANTHROPIC_TYPE_MAX	64	/* an SSE event's type */

int		 anthropic_read(const uint8_t *, size_t, struct anthropic_req *,
		    const char **);
void		 anthropic_req_clear(struct anthropic_req *);
int		 anthropic_rewrite(const uint8_t *, size_t,
		    const struct anthropic_edit *, uint8_t **, size_t *,
		    const char **);
int		 anthropic_sse_event(struct evbuffer *, const uint8_t *, size_t,
		    char *, size_t);
void		 anthropic_sse_error(struct evbuffer *, const char *,
		    const char *);
void		 anthropic_sse_ping(struct evbuffer *);
const char	*anthropic_error_type(int, const char *);
int		 anthropic_error_status(int, const char *);

#endif /* ANTHROPIC_H */
