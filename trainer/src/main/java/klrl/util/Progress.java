package klrl.util;

import java.time.Duration;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.DelegatingProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarConsumer;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Progress of a long phase (warm-up, a rollout, an evaluation, the whole run) on stderr, with rate and
 * ETA, drawn by the progressbar library. A phase that ends within two seconds shows nothing, so a fast
 * CPU step does not flicker. On a terminal the bar redraws in place; elsewhere (CI, docker logs, a
 * file) it is a plain line every five seconds. {@code KLRL_PROGRESS=0} turns it off.
 */
public final class Progress implements AutoCloseable {
    private static final boolean OFF = "0".equals(System.getenv("KLRL_PROGRESS"));
    private static final long SHOW_AFTER_NANOS = 2_000_000_000L;
    private final String task, unit;
    private final long total, t0 = System.nanoTime();
    private long done, startDone;
    private ProgressBar bar;

    private Progress(String task, long total, String unit) {
        this.task = task;
        this.total = total;
        this.unit = unit;
    }

    /** A phase of {@code total} units ("steps", "seq", "prompts"), {@code done} of them already behind it. */
    public static Progress start(String task, long total, String unit, long done) {
        Progress p = new Progress(task, total, unit);
        p.done = done;
        p.startDone = done;
        return p;
    }

    public static Progress start(String task, long total, String unit) {
        return start(task, total, unit, 0);
    }

    /** {@code n} more units done. */
    public synchronized void step(long n) {
        done += n;
        if (bar == null && !OFF && System.nanoTime() - t0 > SHOW_AFTER_NANOS) {
            boolean terminal = System.console() != null;
            bar = new ProgressBarBuilder().setTaskName(task).setInitialMax(total).setUnit(" " + unit, 1).showSpeed()
                    .setStyle(ProgressBarStyle.ASCII).startsFrom(startDone, Duration.ofNanos(System.nanoTime() - t0))
                    .setUpdateIntervalMillis(terminal ? 250 : 5000)
                    .setConsumer(new Once(terminal ? new ConsoleProgressBarConsumer(System.err)
                            : new DelegatingProgressBarConsumer(System.err::println, 100)))
                    .build();
        }
        if (bar != null) {
            bar.stepTo(done);
        }
    }

    @Override
    public synchronized void close() {
        if (bar != null) {
            bar.close();
        }
    }

    /**
     * Draws each state of the bar once: the library redraws the last state when the bar closes, which
     * outside a terminal printed the final line twice. States differ in their count, so a redraw
     * that only advanced the clock is dropped too.
     */
    private static final class Once implements ProgressBarConsumer {
        private static final java.util.regex.Pattern COUNT = java.util.regex.Pattern.compile("\\d+/\\d+ ");
        private final ProgressBarConsumer to;
        private String last;

        Once(ProgressBarConsumer to) {
            this.to = to;
        }

        @Override
        public int getMaxRenderedLength() {
            return to.getMaxRenderedLength();
        }

        @Override
        public void accept(String rendered) {
            // the count ("4/4 steps"): the percentage beside it can be drawn from a count read a moment earlier
            java.util.regex.Matcher count = COUNT.matcher(rendered);
            String state = count.find() ? count.group() : rendered;
            if (!state.equals(last)) {
                last = state;
                to.accept(rendered);
            }
        }

        @Override
        public void clear() {
            to.clear();
        }

        @Override
        public void close() {
            to.close();
        }
    }
}
