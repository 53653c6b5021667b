package klrl.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
    void allKAtOnceEqualTheEstimatorForEach() {
        for (int n = 1; n <= 12; n++) {
            for (int c = 0; c <= n; c++) {
                double[] all = PassAtK.all(n, c);
                for (int k = 1; k <= n; k++) {
                    assertEquals(enumerated(n, c, k), all[k], 1e-12, "n=" + n + " c=" + c + " k=" + k);
                }
            }
        }
    }

    @Test
    void largeNAgainstExactIntegers() {
        for (int[] nck : new int[][] {{1024, 700, 300}, {1024, 3, 1000}, {1024, 1, 512}, {256, 17, 64}, {1024, 1023, 2}}) {
            int n = nck[0], c = nck[1], k = nck[2];
            java.math.BigDecimal none = new java.math.BigDecimal(binomial(n - c, k))
                    .divide(new java.math.BigDecimal(binomial(n, k)), java.math.MathContext.DECIMAL128);
            double exact = 1 - none.doubleValue();
            assertEquals(exact, PassAtK.of(n, c, k), 1e-12, java.util.Arrays.toString(nck));
            assertEquals(exact, PassAtK.all(n, c)[k], 1e-12, java.util.Arrays.toString(nck));
        }
    }

    static java.math.BigInteger binomial(int n, int k) {
        if (k > n) {
            return java.math.BigInteger.ZERO;
        }
        java.math.BigInteger b = java.math.BigInteger.ONE;
        for (int i = 0; i < k; i++) {
            b = b.multiply(java.math.BigInteger.valueOf(n - i)).divide(java.math.BigInteger.valueOf(i + 1));
        }
        return b;
    }
}
