package klrl.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import org.junit.jupiter.api.Test;

/** A slow phase shows its progress as plain lines when stderr is not a terminal; a fast one shows nothing. */
class ProgressTest {
    String capture(long sleepMillis) throws Exception {
        PrintStream err = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setErr(new PrintStream(buf, true));
        try (Progress p = Progress.start("rollout", 10, "seq")) {
            p.step(1);
            Thread.sleep(sleepMillis);
            p.step(5);
        } finally {
            System.setErr(err);
        }
        return buf.toString();
    }

    @Test
    void slowPhasesPrintRateAndCountFastOnesNothing() throws Exception {
        assertEquals("", capture(0));
        String out = capture(2_100);
        assertTrue(out.contains("rollout") && out.contains("6/10 seq") && out.contains("seq/s"), out);
        assertTrue(out.lines().count() >= 1 && !out.contains("\r"), out);
    }

    @Test
    void theFinalStateIsPrintedOnce() throws Exception {
        PrintStream err = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setErr(new PrintStream(buf, true));
        try (Progress p = Progress.start("warm-up", 4, "steps")) {
            Thread.sleep(2_100);
            p.step(4); // the bar appears, and its first drawing already shows the end
            Thread.sleep(300);
        } finally {
            System.setErr(err);
        }
        String out = buf.toString();
        assertEquals(1, out.lines().filter(l -> l.contains("4/4 steps")).count(), out);
    }
}
