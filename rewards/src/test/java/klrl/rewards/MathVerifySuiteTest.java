package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/**
 * Agreement with Math-Verify's own test expectations (rewards/src/test/resources/math_verify_cases.tsv,
 * taken from its tests/test_all.py and tests/test_yujianll.py). Prints the agreement per category; fails if the overall
 * agreement drops below what this verifier reaches today, so a change can only raise it.
 */
class MathVerifySuiteTest {
    /** The agreement reached today (see src/site/markdown/verifier.md); raise it when the verifier improves. */
    static final double FLOOR = 195.0 / 204;

    record Case(boolean expected, String gold, String pred, String category, int precision) {}

    static List<Case> cases() throws IOException {
        List<Case> out = new ArrayList<>();
        for (TsvCases.Row r : TsvCases.read("/math_verify_cases.tsv", 7)) {
            String[] f = r.fields();
            out.add(new Case(f[0].equals("1"), decode(f[1]), decode(f[2]), f[3], Integer.parseInt(f[5])));
        }
        return out;
    }

    static String decode(String s) {
        return s.replace('\u23ce', '\n').replace('\u21e5', '\t');
    }

    @Test
    void agreementWithMathVerifysTestsPerCategory() throws IOException {
        Map<Integer, Verifier> byPrecision = new java.util.HashMap<>();
        Map<String, int[]> byCat = new TreeMap<>();
        List<String> misses = new ArrayList<>();
        int agree = 0, total = 0;
        for (Case c : cases()) {
            // the case's float_rounding, as Math-Verify's test passes it
            Verifier v = byPrecision.computeIfAbsent(c.precision(), d -> new Verifier(1000, Extractor.DEFAULT, d));
            Verifier.Result r = v.verify(c.gold(), c.pred());
            boolean ok = r.correct() == c.expected();
            int[] a = byCat.computeIfAbsent(c.category(), k -> new int[2]);
            a[0] += ok ? 1 : 0;
            a[1]++;
            agree += ok ? 1 : 0;
            total++;
            if (!ok) {
                String p = c.pred().length() > 80 ? "…" + c.pred().substring(c.pred().length() - 80) : c.pred();
                misses.add("[" + c.category() + "] expected " + c.expected() + " gold=" + c.gold().replace("\n", " ")
                        + " pred=" + p.replace("\n", " ") + " extracted=" + r.extracted());
            }
        }
        StringBuilder sb = new StringBuilder(String.format("Math-Verify suite: %d/%d = %.1f %%%n", agree, total, 100.0 * agree / total));
        byCat.forEach((k, a) -> sb.append(String.format("  %-36s %3d/%3d%n", k, a[0], a[1])));
        misses.forEach(m -> sb.append("  miss ").append(m).append('\n'));
        System.out.println(sb);
        assertEquals(204, total);
        assertTrue((double) agree / total >= FLOOR, sb.toString());
    }
}
