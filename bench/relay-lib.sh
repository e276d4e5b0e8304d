# relay-lib.sh: shared by relay.sh and streams.sh (sourced after lib.sh).
#
# A daemon configured to relay Bedrock calls to a local upstream (plain
# http on loopback, fake static AWS keys: the upstream checks no signature,
# but every request is still signed), a token for it, the fast nginx
# upstream that answers InvokeModel, and nginx as a plain reverse proxy.

RELAY_MODEL=${RELAY_MODEL:-anthropic.claude-3-haiku-20240307-v1:0}
RELAY_USER=bench@example.com
UPSTREAM_CPU=${UPSTREAM_CPU:-$CLIENT_CPU}

# The answer of the fast upstream: a small Anthropic message, ~260 bytes.
RELAY_ANSWER='{"id":"msg_bdrk_01BENCH","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[{"type":"text","text":"Hello from the bench upstream."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":17,"output_tokens":9}}'
# What is sent: an Anthropic messages body, ~200 bytes.
RELAY_BODY='{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":[{"type":"text","text":"Say hello to the benchmark, briefly, in one short sentence."}]}]}'

# relay_bsp_config dir upstream_port [extra yaml]
relay_bsp_config()
{
	bsp_config "$1" "jwt: { algorithm: EdDSA, issuer: http://bench.invalid }
aws: { region: us-east-1, access_key_id: AKIDBENCHNOTREAL, secret_access_key: bench-not-a-real-secret, endpoint_url: \"http://127.0.0.1:$2\" }
${3:-}"
	# bsp_config wrote an aws: line of its own; the second one (ours,
	# with endpoint_url) must be the only one.
	awk '/^aws:/ { n++; if (n == 1) next } { print }' "$1/cfg.yaml" \
	    >"$1/cfg.tmp" && mv "$1/cfg.tmp" "$1/cfg.yaml"
	chmod 600 "$1/cfg.yaml"
}

# relay_token dir: a token for the daemon configured in dir.
relay_token()
{
	"$BSP" -f "$1/cfg.yaml" token mint --user "$RELAY_USER" 2>>"$1/cli.log"
}

# nginx_conf_head dir: the common part of a one-process nginx.conf.
nginx_conf_head()
{
	cat <<-EOF
	daemon off;
	master_process off;
	worker_processes 1;
	worker_rlimit_nofile 65536;
	pid $1/nginx.pid;
	error_log $1/logs/error.log warn;
	events { worker_connections 16384; }
	EOF
}

nginx_http_common()
{
	cat <<-EOF
	    access_log off;
	    client_body_temp_path $1/cb;
	    proxy_temp_path $1/px;
	    fastcgi_temp_path $1/fc;
	    uwsgi_temp_path $1/uw;
	    scgi_temp_path $1/sc;
	    keepalive_requests 1000000000;
	    keepalive_timeout 120s;
	EOF
}

# nginx_wait pid port name
nginx_wait()
{
	i=0
	until curl -s -o /dev/null "http://127.0.0.1:$2/"; do
		i=$((i + 1))
		if [ $i -gt 50 ] || ! kill -0 "$1" 2>/dev/null; then
			cat "$3/logs/error.log" "$3/logs/stderr.log" >&2
			echo "nginx ($3) did not start" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# upstream_start dir port: nginx answering POST /model/*/invoke like
# Bedrock's InvokeModel (token-count and request-id headers included), on
# UPSTREAM_CPU; sets UP_PID.
upstream_start()
{
	mkdir -p "$1/logs"
	{
		nginx_conf_head "$1"
		echo "http {"
		nginx_http_common "$1"
		cat <<-EOF
		    server {
		        listen 127.0.0.1:$2 backlog=4096;
		        location ~ ^/model/[^/]+/invoke\$ {
		            default_type application/json;
		            add_header X-Amzn-Bedrock-Input-Token-Count 17;
		            add_header X-Amzn-Bedrock-Output-Token-Count 9;
		            add_header X-Amzn-Bedrock-Invocation-Latency 1;
		            add_header x-amzn-RequestId 8f2b1c3e-0000-4000-8000-00000000b5e7;
		            return 200 '$RELAY_ANSWER';
		        }
		        location / { return 404; }
		    }
		}
		EOF
	} >"$1/nginx.conf"
	taskset -c "$UPSTREAM_CPU" nginx -p "$1" -c "$1/nginx.conf" \
	    2>>"$1/logs/stderr.log" &
	UP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $UP_PID"
	nginx_wait "$UP_PID" "$2" "$1"
}

# nginxproxy_start dir port upstream_port: nginx as a plain reverse proxy
# (keep-alive upstream), on SERVER_CPU; sets NP_PID.
nginxproxy_start()
{
	mkdir -p "$1/logs"
	{
		nginx_conf_head "$1"
		echo "http {"
		nginx_http_common "$1"
		cat <<-EOF
		    upstream bedrock {
		        server 127.0.0.1:$3;
		        keepalive 32;
		        keepalive_requests 1000000000;
		    }
		    server {
		        listen 127.0.0.1:$2 backlog=4096;
		        location / {
		            proxy_pass http://bedrock;
		            proxy_http_version 1.1;
		            proxy_set_header Connection "";
		        }
		    }
		}
		EOF
	} >"$1/nginx.conf"
	taskset -c "$SERVER_CPU" nginx -p "$1" -c "$1/nginx.conf" \
	    2>>"$1/logs/stderr.log" &
	NP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $NP_PID"
	nginx_wait "$NP_PID" "$2" "$1"
}

# bare_start dir upstream_port: build bench/bare-relay.c into $WORK (once,
# -O2 -g, against the same libevent as the daemon) and start it on
# SERVER_CPU, relaying to 127.0.0.1:upstream_port; sets BARE_PID, BARE_PORT.
bare_start()
{
	[ -x "$WORK/bare-relay" ] || {
		echo "building bare-relay" >&2
		gcc -O2 -g -Wall -o "$WORK/bare-relay" \
		    "$TOP/bench/bare-relay.c" $(pkg-config --cflags --libs libevent)
	}
	mkdir -p "$1"
	taskset -c "$SERVER_CPU" "$WORK/bare-relay" 0 "$2" \
	    >"$1/out" 2>"$1/err" &
	BARE_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BARE_PID"
	_i=0
	until BARE_PORT=$(sed -n 's/^listening //p' "$1/out") &&
	    [ -n "$BARE_PORT" ]; do
		_i=$((_i + 1))
		[ $_i -lt 50 ] && kill -0 "$BARE_PID" 2>/dev/null ||
		    { cat "$1/err" >&2; echo "bare-relay did not start" >&2;
		    exit 1; }
		sleep 0.1
	done
}

# fd_count pid
fd_count()
{
	ls "/proc/$1/fd" 2>/dev/null | wc -l
}
