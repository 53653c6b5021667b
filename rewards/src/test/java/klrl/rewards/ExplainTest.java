package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Clock times, where an answer was found, and what {@code Verifier.explain} says about both. */
class ExplainTest {
    final Verifier v = new Verifier();

    @Test
    void clockTimesAreReadOnTheTwentyFourHourClockUnlessMarked() {
        String[][] times = { // answer, minutes after midnight, unmistakable
            {"9:30", "570", "false"}, {"09:30", "570", "true"}, {"1:05", "65", "true"}, {"0:15", "15", "false"},
            {"12:00", "720", "true"}, {"23:59", "1439", "false"}, {"9:30 a.m.", "570", "true"}, {"9:30 p.m.", "1290", "true"},
            {"9:30\\,\\text{pm}", "1290", "true"}, {"\\text{7:05 AM}", "425", "true"}, {"$9{:}30$", "570", "false"},
            {"12:15 a.m.", "15", "true"}, {"12:15 p.m.", "735", "true"}, {"9:30.", "570", "false"},
        };
        for (String[] t : times) {
            ClockTime c = ClockTime.read(t[0]);
            assertEquals(Integer.parseInt(t[1]), c == null ? -1 : c.minutes(), t[0]);
            assertEquals(Boolean.parseBoolean(t[2]), c.unmistakable(), t[0]);
        }
        for (String notATime : new String[] {"3:8", "24:00", "9:60", "13:30 p.m.", "0:30 a.m.", "9:305", "S_1:S_2=3:8", "1:2:3", "9:30 pm or 10:00"}) {
            assertNull(ClockTime.read(notATime), notATime);
        }
        assertEquals("21:30", ClockTime.read("9:30 p.m.").toString());
        assertEquals("0:05", ClockTime.read("12:05 am").toString());
    }

    /** What find reports is what extract returns, and its span is where that answer stands in the text. */
    @Test
    void foundSpansAreWhereTheAnswerStands() throws IOException {
        Extractor e = new Extractor(Extractor.DEFAULT);
        int spans = 0;
        for (VerifierTest.Case c : VerifierTest.cases()) {
            for (String text : List.of(c.pred(), c.gold())) {
                Extractor.Found f = e.find(text);
                assertEquals(e.extract(text), f == null ? null : f.answer(), text);
                if (f != null && f.start() >= 0) {
                    assertEquals(f.answer(), text.substring(f.start(), f.end()), text);
                    spans++;
                }
            }
        }
        assertTrue(spans > 150, "spans: " + spans);
        String tail = "x".repeat(Extractor.TAIL + 500) + " so 41 and then 42 apples";
        Extractor.Found f = e.find(tail);
        assertEquals(Extractor.Rule.LAST_NUMBER, f.rule());
        assertEquals("42", tail.substring(f.start(), f.end()));
    }

    @Test
    void explainSaysWhichSpanItTookWhenNoAnswerWasMarked() {
        String completion = "First 40 apples, then 2 more make 42 apples in total.";
        Map<String, Object> e = v.explain("42", completion);
        assertEquals("no \\boxed{}, no stated answer (\"the answer is\", \"Answer:\"), no \"####\" line, no $…$ or \\(…\\) math span,"
                + " not a bare answer (too long, or prose): took the last number `42` at characters 35–36 of 53", e.get("pred_found"));
        assertEquals("42", completion.substring(34, 36));
        assertEquals(List.of("gold_extracted", "gold_normalized", "gold_read", "pred_extracted", "pred_found", "pred_normalized",
                "pred_read", "correct", "why"), List.copyOf(e.keySet()));

        String math = "We expand and get $x^2 + 1$ in the end, so that is that.";
        assertEquals("no \\boxed{}, no stated answer (\"the answer is\", \"Answer:\"), no \"####\" line: took the last math span"
                + " `x^2 + 1` at characters 20–26 of 56", v.explain("x^2+1", math).get("pred_found"));
        assertEquals("math x^2 + 1", v.explain("x^2+1", math).get("pred_read"));

        String past = "The final answer is $\\prod_{j=1}^m\\bigl(j\\bigr)$. So it is 17.";
        assertEquals("the stated answer `\\prod_{j=1}^m\\bigl(j\\bigr)` does not read as math: took the last number after it,"
                + " `17` at characters 60–61 of 62", v.explain("17", past).get("pred_found"));
        assertEquals("a stated answer (\"the answer is …\", \"Answer: …\"): `7` at character 15 of 16",
                v.explain("7", "The answer is 7.").get("pred_found"));
        assertEquals("the last \\boxed{}", v.explain("7", "so \\boxed{7}").get("pred_found"));
        assertEquals("boxes side by side, read together as one list", v.explain("3", "\\boxed{2} or \\boxed{3}").get("pred_found"));
        Map<String, Object> none = new Verifier(1000, List.of(Extractor.Fallback.LAST_NUMBER)).explain("3", "no idea");
        assertEquals("nothing: no \\boxed{}, no number", none.get("pred_found"));
    }

    @Test
    void explainPrintsExpressionsAndTimesAsWritten() {
        Map<String, Object> e = v.explain("\\frac{1+\\sqrt{5}}{2}", "\\boxed{\\dfrac{1+\\sqrt5}{2}}");
        assertEquals("math (1 + sqrt(5))/2", e.get("gold_read"));
        assertEquals("math (1 + sqrt(5))/2", e.get("pred_read"));

        Map<String, Object> t = v.explain("9:30", "\\boxed{3:10}");
        assertEquals(false, t.get("correct"));
        assertEquals("time of day 9:30", t.get("gold_read"));
        assertEquals("both are times of day, different ones (9:30 and 3:10)", t.get("why"));
        Map<String, Object> pm = v.explain("9:30 p.m.", "\\boxed{21:30}");
        assertEquals(true, pm.get("correct"));
        assertEquals("21:30", pm.get("gold_normalized"));
        Map<String, Object> marked = v.explain("1:05", "\\boxed{\\frac{1}{5}}");
        assertEquals(false, marked.get("correct"));
        assertTrue(((String) marked.get("why")).startsWith("a time written so that no ratio is meant"), marked.toString());
        Map<String, Object> ratio = v.explain("5:12", "\\boxed{\\frac{5}{12}}");
        assertEquals(true, ratio.get("correct"));
        assertEquals("math 5/12 (h:mm could be a time, but the other side is none: read as a ratio)", ratio.get("gold_read"));
        for (Object x : ratio.values()) {
            assertFalse(String.valueOf(x).contains("[op="), ratio.toString());
        }
    }
}
