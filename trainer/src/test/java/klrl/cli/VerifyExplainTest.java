package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** {@code verify --explain} as a user reads it: expressions as written, and where an unmarked answer was found. */
class VerifyExplainTest {

    static String explain(String gold, String pred) {
        PrintStream oldOut = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            assertEquals(0, Main.run("verify", "--explain", "--gold", gold, "--pred", pred));
        } finally {
            System.setOut(oldOut);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @Test
    void explainPrintsReadableMathAndTheSpanItTook() {
        String out = explain("\\frac{1}{2} + \\sqrt{2}", "Adding them we get $\\sqrt{2}+0.5$ in the end, which is the sum.");
        assertEquals(String.join("\n",
                "gold_extracted: \\frac{1}{2} + \\sqrt{2}",
                "gold_normalized: \\frac{1}{2} + \\sqrt{2}",
                "gold_read: math 1/2 + sqrt(2)",
                "pred_extracted: \\sqrt{2}+0.5",
                "pred_found: no \\boxed{}, no stated answer (\"the answer is\", \"Answer:\"), no \"####\" line: took the last math span"
                        + " `\\sqrt{2}+0.5` at characters 21–32 of 63",
                "pred_normalized: \\sqrt{2}+0.5",
                "pred_read: math sqrt(2) + 0.5",
                "correct: true",
                "why: equal as mathematical objects (exact arithmetic, intervals, sets or random-point identity)", ""),
                out.replace(System.lineSeparator(), "\n"));
        assertFalse(out.contains("Bin[") || out.contains("Num["), out);
    }

    @Test
    void explainTellsTimesFromRatios() {
        String out = explain("9:30", "The clock shows \\boxed{3:10}.");
        assertFalse(out.contains("correct: true"), out);
        assertEquals(true, out.contains("why: both are times of day, different ones (9:30 and 3:10)"), out);
    }
}
