package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The parsed-answer printer {@code verify --explain} shows: as written by hand, parentheses only where needed. */
class MathTextTest {

    static String printed(String latex) {
        return MathText.of(LatexParser.parse(Normalizer.normalize(latex), new Deadline(1_000_000_000L)));
    }

    @Test
    void numbersAndArithmetic() {
        String[][] cases = {
            {"\\frac{1}{2}", "1/2"},
            {"0.5", "0.5"},
            {"1.5e-3", "0.0015"},
            {"12.50", "12.5"},
            {"x^2+1", "x^2 + 1"},
            {"-\\frac{1}{2}", "-1/2"},
            {"\\frac{1+x}{2}", "(1 + x)/2"},
            {"\\frac{1}{x+1}", "1/(x + 1)"},
            {"\\frac{a}{bc}", "a/(b*c)"},
            {"(x+1)^2", "(x + 1)^2"},
            {"2^{n+1}", "2^(n + 1)"},
            {"x^{-1}", "x^(-1)"},
            {"2^{3^2}", "2^(3^2)"},
            {"(-2)^3", "(-2)^3"},
            {"-x^2", "-x^2"},
            {"-(a+b)", "-(a + b)"},
            {"a-(b-c)", "a - (b - c)"},
            {"a-b-c", "a - b - c"},
            {"a+(-b)", "a + (-b)"},
            {"2x", "2x"},
            {"-2x", "-2x"},
            {"2\\cdot 3", "2*3"},
            {"2e", "2*e"},
            {"xy", "x*y"},
            {"3(x+1)", "3(x + 1)"},
            {"(a-b)(a+b)", "(a - b)(a + b)"},
            {"(a-b)c", "(a - b)*c"},
            {"2\\pi", "2pi"},
            {"\\frac{\\pi}{2}", "pi/2"},
        };
        check(cases);
    }

    @Test
    void functionsAndNames() {
        String[][] cases = {
            {"\\sqrt{2}", "sqrt(2)"},
            {"2\\sqrt{3}", "2sqrt(3)"},
            {"\\frac{\\sqrt{3}}{2}", "sqrt(3)/2"},
            {"\\sqrt[3]{x}", "sqrt[3](x)"},
            {"\\frac{1+\\sqrt{5}}{2}", "(1 + sqrt(5))/2"},
            {"\\sin^2 x", "sin(x)^2"},
            {"\\log_2 8", "log_2(8)"},
            {"|x-1|", "|x - 1|"},
            {"5!", "5!"},
            {"(n+1)!", "(n + 1)!"},
            {"\\binom{5}{2}", "binom(5, 2)"},
            {"x_1 + x_{10}", "x_1 + x_{10}"},
            {"a_{n+1}", "a_{n+1}"},
            {"2\\alpha", "2alpha"},
            {"1 \\pm \\sqrt{2}", "1 ± sqrt(2)"},
            {"\\pm 3", "±3"},
        };
        check(cases);
    }

    @Test
    void structuresAsWritten() {
        String[][] cases = {
            {"\\{1, 2\\}", "{1, 2}"},
            {"\\emptyset", "{}"},
            {"(1, 2)", "(1, 2)"},
            {"(\\frac{4}{5}, -\\frac{1}{5})", "(4/5, -1/5)"},
            {"[0, \\infty)", "[0, inf)"},
            {"(-\\infty, 1) \\cup (2, \\infty)", "(-inf, 1) ∪ (2, inf)"},
            {"2, 3", "2, 3"},
            {"x \\le 3", "x <= 3"},
            {"-12 < x < 40", "-12 < x < 40"},
            {"x = 2 \\text{ or } x = 3", "x = 2, x = 3"},
            {"\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "[[1, 2], [3, 4]]"},
            {"S_1:S_2=3:8", "S_1/S_2 = 3/8"},
        };
        check(cases);
    }

    /** Every gold answer of the hand-written cases that parses prints without the parser's record syntax. */
    @Test
    void everyCaseGoldPrintsAsMath() throws IOException {
        int n = 0;
        for (VerifierTest.Case c : VerifierTest.cases()) {
            Node node;
            try {
                node = Verifier.toNode(c.gold(), Normalizer.normalize(c.gold()), new Deadline(1_000_000_000L));
            } catch (RuntimeException e) {
                continue;
            }
            String s = MathText.of(node);
            assertFalse(s.isBlank() || s.contains("[op=") || s.contains("Rational[") || s.contains("Var["), c.gold() + " → " + s);
            n++;
        }
        assertFalse(n < 200, "printed " + n);
    }

    private static void check(String[][] cases) {
        List<String> wrong = new ArrayList<>();
        for (String[] c : cases) {
            String got = printed(c[0]);
            if (!got.equals(c[1])) {
                wrong.add(c[0] + " → " + got + " (expected " + c[1] + ")");
            }
        }
        assertEquals(List.of(), wrong);
    }
}
