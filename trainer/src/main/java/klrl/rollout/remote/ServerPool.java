package klrl.rollout.remote;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import klrl.util.Json;

/**
 * The inference servers of a run and the one way requests reach them. Each request goes to the
 * usable server with the fewest requests in flight (at most max_inflight each); a timeout, a refused
 * connection, a 5xx or 429 answer, or a response that cannot enter a batch sends it, after a backoff,
 * to another server, and takes the failing one out of rotation for a while (longer after each failure
 * in a row). A server whose weight load failed, or that answered from other weights, is stale: it
 * gets no requests until a later load succeeds on it.
 */
public final class ServerPool {
    /** A 2xx answer: which server gave it, and its JSON body (null when empty). */
    public record Answer(String server, JsonNode body) {}

    private static final class Server {
        final String url;
        final Semaphore slots;
        final AtomicInteger inflight = new AtomicInteger();
        volatile long downUntil; // System.nanoTime
        volatile int failuresInRow;
        volatile boolean stale;
        /** The version query this server answered last (its release's name for it), or null before the first. */
        volatile Dialect.Call versionQuery;

        Server(String url, int maxInflight) {
            this.url = url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
            this.slots = new Semaphore(maxInflight);
        }

        boolean usable(long now) {
            return !stale && downUntil <= now;
        }
    }

    private final List<Server> servers = new ArrayList<>();
    private final HttpClient http;
    private final Duration timeout;
    private final int maxRetries;
    private final long backoffNanos;
    private final AtomicInteger next = new AtomicInteger();
    private final AtomicLong retries = new AtomicLong();

    /**
     * @param backoff first wait before a retry; it doubles with each attempt of a request, up to 30 ×
     */
    public ServerPool(List<String> urls, Duration timeout, int maxRetries, int maxInflight, Duration backoff) {
        urls.forEach(u -> servers.add(new Server(u, maxInflight)));
        this.timeout = timeout;
        this.maxRetries = maxRetries;
        this.backoffNanos = backoff.toNanos();
        // a host that does not answer at all should cost seconds, not a whole request timeout
        Duration connect = timeout.compareTo(Duration.ofSeconds(10)) < 0 ? timeout : Duration.ofSeconds(10);
        this.http = HttpClient.newBuilder().connectTimeout(connect).version(HttpClient.Version.HTTP_1_1).build();
    }

    public List<String> urls() {
        return servers.stream().map(s -> s.url).toList();
    }

    /** Retries since the last call (the step's rollout_retries); then resets. */
    public long takeRetries() {
        return retries.getAndSet(0);
    }

    /** Servers that take requests now. */
    public int usable() {
        long now = System.nanoTime();
        return (int) servers.stream().filter(s -> s.usable(now)).count();
    }

    /**
     * Sends {@code call} to a server and returns what {@code read} makes of its answer; {@code read}
     * throws {@link Dialect.Refused} for a response that must not be used, which counts as that
     * server's failure. Blocks; callers run requests from several threads.
     */
    public <T> T request(Dialect.Call call, Function<Answer, T> read) {
        String last = "no server was usable";
        for (int attempt = 0; attempt < maxRetries; ) {
            Server s = pick();
            if (s == null) {
                // every server is out of rotation: wait for the first to come back (not an attempt), unless
                // all are stale, which only a weight load ends
                long wait = untilOneReturns();
                if (wait < 0) {
                    throw new ServersUnavailable("every rollout server " + urls() + " serves weights other than the"
                            + " version asked for (a load failed on it); last: " + last);
                }
                sleep(wait);
                continue;
            }
            if (attempt++ > 0) {
                retries.incrementAndGet();
                sleep(Math.min(backoffNanos << Math.min(attempt - 2, 5), backoffNanos * 30));
            }
            try {
                s.slots.acquireUninterruptibly();
                s.inflight.incrementAndGet();
                JsonNode body = send(s, call);
                T t = read.apply(new Answer(s.url, body));
                s.failuresInRow = 0;
                return t;
            } catch (Dialect.Refused e) {
                last = s.url + ": " + e.getMessage();
                if (e instanceof Dialect.Stale) {
                    s.stale = true; // it serves other weights: nothing more from it until a load succeeds
                } else {
                    down(s);
                }
            } catch (IOException e) {
                last = s.url + ": " + e.getClass().getSimpleName() + (e.getMessage() != null ? " " + Json.firstLine(e.getMessage()) : "");
                down(s);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ServersUnavailable("rollout interrupted");
            } finally {
                s.inflight.decrementAndGet();
                s.slots.release();
            }
        }
        throw new ServersUnavailable("rollout servers " + urls() + ": " + call.path() + " failed " + maxRetries
                + " times (rollout.max_retries); last: " + last);
    }

    /**
     * Runs {@code calls} in order on every server (a weight load), then checks with {@code verify}
     * that each serves what it should. A server where either fails is stale until a later load
     * succeeds; if no server is left, the load fails with every server's reason.
     */
    public void onEveryServer(List<Dialect.Call> calls, Function<Answer, String> verify, List<Dialect.Call> queries) {
        List<String> errors = new ArrayList<>();
        for (Server s : servers) {
            String error = null;
            for (int attempt = 0; attempt < maxRetries; attempt++) {
                try {
                    for (Dialect.Call c : calls) {
                        send(s, c);
                    }
                    error = verify.apply(new Answer(s.url, askVersion(s, queries)));
                    break; // loaded: it serves the new version, or says which one it serves instead
                } catch (Dialect.Refused e) {
                    error = e.getMessage();
                    break; // the server answered and said no: retrying the same load will not help
                } catch (IOException e) {
                    error = e.getClass().getSimpleName() + (e.getMessage() != null ? " " + Json.firstLine(e.getMessage()) : "");
                    retries.incrementAndGet();
                    sleep(Math.min(backoffNanos << attempt, backoffNanos * 30));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new ServersUnavailable("weight load interrupted");
                }
            }
            s.stale = error != null;
            if (error == null) {
                s.failuresInRow = 0;
                s.downUntil = 0;
            } else {
                errors.add(s.url + ": " + error);
            }
        }
        if (errors.size() == servers.size()) {
            throw new ServersUnavailable("no rollout server took the new weights: " + String.join("; ", errors));
        }
    }

    /** Nanoseconds until the first server out of rotation (and not stale) is back; −1 when every server is stale. */
    private long untilOneReturns() {
        long now = System.nanoTime(), best = -1;
        for (Server s : servers) {
            if (!s.stale) {
                long w = Math.max(0, s.downUntil - now);
                best = best < 0 ? w : Math.min(best, w);
            }
        }
        return best;
    }

    /** The usable server with the fewest requests in flight (round-robin among equals), or null. */
    private Server pick() {
        long now = System.nanoTime();
        int start = Math.floorMod(next.getAndIncrement(), servers.size());
        Server best = null;
        for (int i = 0; i < servers.size(); i++) {
            Server s = servers.get((start + i) % servers.size());
            if (s.usable(now) && (best == null || s.inflight.get() < best.inflight.get())) {
                best = s;
            }
        }
        return best;
    }

    private void down(Server s) {
        int f = ++s.failuresInRow;
        s.downUntil = System.nanoTime() + Math.min(backoffNanos << Math.min(f, 6), backoffNanos * 60);
    }

    /**
     * The answer to the first of {@code queries} the server has (the one it answered last time first);
     * a 404 moves on to the next, and the one that answered is remembered.
     */
    private JsonNode askVersion(Server s, List<Dialect.Call> queries) throws IOException, InterruptedException {
        List<Dialect.Call> order = new ArrayList<>(queries);
        if (s.versionQuery != null && order.remove(s.versionQuery)) {
            order.add(0, s.versionQuery);
        }
        List<String> missing = new ArrayList<>();
        for (Dialect.Call q : order) {
            try {
                JsonNode body = send(s, q);
                s.versionQuery = q;
                return body;
            } catch (Dialect.NotFound e) {
                missing.add(q.path());
            }
        }
        throw new Dialect.Refused("no weight-version endpoint: " + String.join(", ", missing) + " all answered HTTP 404");
    }

    /** The path of the version query each server answered last (null for one not asked yet), in server order. */
    public List<String> versionEndpoints() {
        return servers.stream().map(s -> s.versionQuery == null ? null : s.versionQuery.path()).toList();
    }

    /**
     * One HTTP exchange; a non-2xx answer is an IOException (5xx, 429: try elsewhere), NotFound (404,
     * whatever its body: a proxy in front answers with its own HTML page) or a refusal (other 4xx).
     */
    private JsonNode send(Server s, Dialect.Call call) throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(s.url + call.path())).timeout(timeout);
        if (call.body() == null) {
            b.GET();
        } else {
            b.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(Json.write(call.body())));
        }
        HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        int code = r.statusCode();
        if (code >= 500 || code == 429) {
            throw new IOException("HTTP " + code + " " + Json.firstLine(r.body()));
        }
        if (code == 404) {
            throw new Dialect.NotFound(call.path() + " answered HTTP 404: " + Json.firstLine(r.body()));
        }
        JsonNode body;
        try {
            body = r.body().isBlank() ? null : Json.MAPPER.readTree(r.body());
        } catch (IOException e) {
            throw new Dialect.Refused(call.path() + " answered HTTP " + code + " with a body that is not JSON: " + Json.firstLine(r.body()));
        }
        if (code >= 300) {
            throw new Dialect.Refused(call.path() + " answered HTTP " + code + ": " + Json.firstLine(r.body()));
        }
        if (body != null && body.has("success") && !body.get("success").asBoolean()) {
            throw new Dialect.Refused(call.path() + " answered success=false: " + body.path("message").asText(""));
        }
        return body;
    }

    private static void sleep(long nanos) {
        try {
            Thread.sleep(nanos / 1_000_000, (int) (nanos % 1_000_000));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
