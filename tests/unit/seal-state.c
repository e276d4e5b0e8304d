/*
 * seal-state.c: seal a sign-in state under a daemon's KEK, for the
 * integration tests of states this proxy could have issued but that are
 * no longer good (expired ones, which a test cannot wait ten minutes for).
 *
 *	seal-state KEKFILE browser|api PROVIDER REDIRECT_URI EXPIRES
 *
 * prints the sealed state and the text of its id (the browser flow's state
 * parameter), separated by a space.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "oauth-state.h"

int
main(int argc, char **argv)
{
	struct crypto_err	 err;
	struct oauth_state	 st;
	char			 id[OAUTH_STATE_ID_TEXT], *text, *end;

	if (argc != 6 || (strcmp(argv[2], "browser") != 0 &&
	    strcmp(argv[2], "api") != 0)) {
		fprintf(stderr, "usage: seal-state KEKFILE browser|api "
		    "PROVIDER REDIRECT_URI EXPIRES\n");
		return (1);
	}
	if (crypto_init() == -1 || crypto_kek_load(argv[1], &err) == -1) {
		fprintf(stderr, "seal-state: %s\n", err.msg);
		return (1);
	}
	memset(&st, 0, sizeof st);
	st.flow = strcmp(argv[2], "api") == 0 ? OAUTH_FLOW_API :
	    OAUTH_FLOW_BROWSER;
	st.flags = OAUTH_STATE_PKCE;
	st.expires = strtoll(argv[5], &end, 10);
	if (*argv[5] == '\0' || *end != '\0') {
		fprintf(stderr, "seal-state: bad expiry\n");
		return (1);
	}
	crypto_random(st.id, sizeof st.id);
	crypto_random(st.nonce, sizeof st.nonce);
	crypto_random(st.verifier, sizeof st.verifier);
	crypto_sha256(argv[4], strlen(argv[4]), st.redirect_hash);
	bsp_strlcpy(st.provider, argv[3], sizeof st.provider);
	if ((text = oauth_state_seal(&st)) == NULL) {
		fprintf(stderr, "seal-state: cannot seal\n");
		return (1);
	}
	oauth_state_id_text(&st, id);
	printf("%s %s\n", text, id);
	free(text);
	crypto_kek_unload();
	return (0);
}
