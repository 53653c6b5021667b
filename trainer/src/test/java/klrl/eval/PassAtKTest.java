package klrl.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import klrl.rewards.Verifier;
import org.junit.jupiter.api.Test;

class PassAtKTest {
    /** The share of k-subsets of n samples (the first c correct) holding a correct one, by listing them all. */
    static double enumerated(int n, int c, int k) {
        long hit = 0, all = 0;
        for (int mask = 0; mask < 1 << n; mask++) {
            if (Integer.bitCount(mask) == k) {
                all++;
                hit += (mask & ((1 << c) - 1)) != 0 ? 1 : 0;
            }
        }
        return (double) hit / all;
    }

    @Test
    void equalsTheShareOfSubsetsHoldingACorrectSample() {
        for (int n = 1; n <= 12; n++) {
            for (int c = 0; c <= n; c++) {
                for (int k = 1; k <= n; k++) {
                    assertEquals(enumerated(n, c, k), PassAtK.of(n, c, k), 1e-12, "n=" + n + " c=" + c + " k=" + k);
                }
            }
        }
    }

    @Test
    void passAtOneIsTheShareCorrectAndLargeNStaysFinite() {
        assertEquals(3.0 / 8, PassAtK.of(8, 3, 1), 1e-15);
        // C(1024, 512) overflows a double; the product form does not
        double p = PassAtK.of(1024, 1, 512);
        assertEquals(0.5, p, 1e-12);
        assertThrows(IllegalArgumentException.class, () -> PassAtK.of(4, 1, 5));
    }

    @Test
    void majorityCountsVerifierEqualAnswersAsOneAndSplitsTies() {
        Verifier v = new Verifier();
        List<String> answers = java.util.Arrays.asList("1/2", "0.5", "3", "\\frac{1}{2}", null, "3", " 3 ");
        int[] classes = Majority.classes(answers, v::sameAnswer);
        org.junit.jupiter.api.Assertions.assertArrayEquals(new int[] {0, 0, 1, 0, -1, 1, 1}, classes);
        boolean[] correct = {true, true, false, true, false, false, false}; // gold 1/2
        assertEquals(0.5, Majority.score(classes, correct), 0); // 3 votes each: one of two tied classes is right
        assertEquals(1.0, Majority.score(new int[] {0, 0, 1, 0, -1, 1}, correct), 0);
        assertEquals(0.0, Majority.score(new int[] {-1, -1}, new boolean[] {false, false}), 0);
        // a class is as right as its first sample
        assertEquals(0.0, Majority.score(new int[] {0, 0}, new boolean[] {false, true}), 0);
    }
}
