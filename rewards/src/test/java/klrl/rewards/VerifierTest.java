package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class VerifierTest {
    final Verifier v = new Verifier();

    record Case(boolean expected, String gold, String pred, String category, int line) {}

    static List<Case> cases() throws IOException {
        List<Case> out = new ArrayList<>();
        for (TsvCases.Row r : TsvCases.read("/verifier_cases.tsv", 4)) {
            String[] f = r.fields();
            String pred = f[3].startsWith("fallback") ? f[2].replace("\\n", "\n") : f[2];
            out.add(new Case(f[0].equals("T"), f[1], pred, f[3], r.line()));
        }
        return out;
    }

    @Test
    void handWrittenCasesAcrossEveryCategory() throws IOException {
        List<Case> cs = cases();
        assertTrue(cs.size() >= 230, "cases: " + cs.size());
        List<String> failures = new ArrayList<>();
        for (Case c : cs) {
            Verifier.Result r = v.verify(c.gold(), c.pred());
            if (r.correct() != c.expected()) {
                failures.add("line " + c.line() + " [" + c.category() + "] gold=" + c.gold() + " pred=" + c.pred()
                        + " extracted=" + r.extracted() + " → " + r.correct());
            }
        }
        assertTrue(failures.isEmpty(), failures.size() + " failures:\n" + String.join("\n", failures));
        // negatives are a real part of the suite, not a token
        assertTrue(cs.stream().filter(c -> !c.expected()).count() >= 70);
    }

    /** Generated forms of the same numbers: every equivalent spelling agrees, every neighbour differs. */
    @Test
    void generatedNumericForms() {
        int n = 0;
        for (int k = -12; k <= 60; k += 3) {
            String[] same = {Integer.toString(k), k + ".0", "\\frac{" + (2 * k) + "}{2}", "\\dfrac{" + (3 * k) + "}{3}",
                "\\boxed{" + k + "}", "$" + k + "$", k + "\\%", "\\text{" + k + "}"};
            for (String s : same) {
                assertTrue(v.verify(Integer.toString(k), "\\boxed{" + s + "}").correct(), k + " vs " + s);
                n++;
            }
            String[] diff = k == 0 ? new String[] {"1", "0.5", "-1"}
                    : new String[] {Integer.toString(k + 1), k + ".5", "\\frac{" + k + "}{7}", Integer.toString(-k - 1), k + "0"};
            for (String s : diff) {
                assertFalse(v.verify(Integer.toString(k), "\\boxed{" + s + "}").correct(), k + " vs " + s);
                n++;
            }
        }
        assertTrue(n > 300);
    }

    @Test
    void mathStyleGoldSolutionsAreExtracted() {
        String gold = "We have $x^2 = 4$, so $x = \\pm 2$ and the product is $\\boxed{-4}$.";
        assertTrue(v.verify(gold, "so \\boxed{-4}").correct());
        assertFalse(v.verify(gold, "so \\boxed{4}").correct());
        assertEquals("-4", Extractor.gold(gold));
        assertEquals("72", Extractor.gold("Natalia sold 48+24 = 72 clips.\n#### 72"));
    }

    @Test
    void extractionHandlesNestedBracesAndFallbacks() {
        assertEquals("\\frac{\\sqrt{3}}{2}", Extractor.lastBoxed("x \\boxed{\\frac{\\sqrt{3}}{2}} y"));
        assertEquals("\\{1, 2\\}", Extractor.lastBoxed("\\boxed{\\{1, 2\\}}"));
        assertNull(Extractor.lastBoxed("\\boxed{unbalanced"));
        Extractor onlyBoxed = new Extractor(List.of());
        assertNull(onlyBoxed.extract("The answer is 5."));
        assertEquals("5", new Extractor(List.of(Extractor.Fallback.ANSWER_IS)).extract("The answer is 5."));
    }

    @Test
    void hostileInputsReturnQuicklyAndFalse() {
        long t0 = System.nanoTime();
        assertFalse(v.verify("10^{10^{10}}", "\\boxed{10^{10^{10}}+1}").correct());
        assertFalse(v.verify("2", "\\boxed{" + "{".repeat(5000) + "2" + "}".repeat(5000) + "}").correct());
        assertFalse(v.verify("2", "\\boxed{" + "(".repeat(3000) + "2" + ")".repeat(3000) + "}").correct());
        String big = "blah ".repeat(20_000) + "\\boxed{3}";
        assertTrue(v.verify("3", big).correct());
        assertFalse(v.verify("3", "x".repeat(100_000)).correct());
        assertFalse(v.verify("1", "\\boxed{" + "1+".repeat(20_000) + "1}").correct());
        assertFalse(v.verify("9^{9^{9^{9}}}", "\\boxed{9^{9^{9^{9}}}-1}").correct());
        assertFalse(v.verify("2", "\\boxed{" + "\\text{".repeat(20_000) + "2" + "}".repeat(20_000) + "}").correct());
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 5000, "hostile inputs took " + ms + " ms");
    }

    @Test
    void timeoutsReturnIncorrectAndAreCounted() {
        Verifier tiny = new Verifier(1, Extractor.DEFAULT);
        String expr = "(" + "x+".repeat(400) + "1)^{2}";
        int timedOut = 0;
        for (int i = 0; i < 50; i++) {
            Verifier.Result r = tiny.verify(expr, "\\boxed{" + expr.replace("x+", "+x") + "}");
            if (r.timedOut()) {
                assertFalse(r.correct());
                timedOut++;
            }
        }
        assertEquals(timedOut, tiny.timeouts());
        assertTrue(timedOut > 0, "a 1 ms budget never expired");
        int threadsBefore = Thread.activeCount();
        new Verifier().verify("1", "\\boxed{1}");
        assertEquals(threadsBefore, Thread.activeCount(), "verification must not start threads");
        assertThrows(IllegalArgumentException.class, () -> new Verifier(0, Extractor.DEFAULT));
    }

    @Test
    void rewardsByNameAndUserClasses() {
        Reward math = Rewards.byName("math");
        assertEquals(1.0, math.score("q", "\\boxed{4}", "4").value());
        assertEquals(0.0, math.score("q", "\\boxed{5}", "4").value());
        assertEquals(Map.of("correct", true, "extracted", "4", "timed_out", false), math.score("q", "\\boxed{4}", "4").details());
        Reward fmt = Rewards.byName("format");
        assertEquals(1.0, fmt.score("q", "so \\boxed{4}", "4").value());
        assertEquals(0.0, fmt.score("q", "so 4", "4").value());
        assertEquals(0.0, fmt.score("q", "\\boxed{3} or \\boxed{4}", "4").value());
        assertEquals(1.0, Rewards.byName(LengthReward.class.getName()).score("", "abc", "").value());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Rewards.byName("com.nope.Missing"));
        assertTrue(e.getMessage().contains("com.nope.Missing"));
        assertThrows(IllegalArgumentException.class, () -> Rewards.byName(String.class.getName()));
    }

    /** A user reward, loaded by class name. */
    public static final class LengthReward implements Reward {
        @Override
        public Score score(String prompt, String completion, String gold) {
            return new Score(completion.length() <= 3 ? 1 : 0, Map.of());
        }
    }
}
