-- report.lua: wrk's summary as one machine-readable line (wrk -s).
-- Latencies are in microseconds; errors.status counts non-2xx/3xx answers.
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("WRKRESULT requests=%d duration_us=%d "
	    .. "bytes=%d connect=%d read=%d write=%d status=%d timeout=%d "
	    .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
	    summary.requests, summary.duration, summary.bytes, e.connect,
	    e.read, e.write, e.status, e.timeout, latency:percentile(50),
	    latency:percentile(90), latency:percentile(99), latency.max))
end
