package klrl.eval;

/**
 * The unbiased estimator of pass@k from n samples of which c are correct (Chen et al., 2021):
 * 1 − C(n−c, k) / C(n, k), the chance that k samples drawn without replacement from the n hold at
 * least one correct one. Computed as 1 − Π_{i=n−c+1..n} (1 − k/i), which never forms a binomial.
 */
public final class PassAtK {
    private PassAtK() {}

    public static double of(int n, int c, int k) {
        if (k < 1 || k > n || c < 0 || c > n) {
            throw new IllegalArgumentException("pass@k needs 1 ≤ k ≤ n and 0 ≤ c ≤ n, got n=" + n + " c=" + c + " k=" + k);
        }
        if (k == 1) {
            return (double) c / n;
        }
        if (n - c < k) {
            return 1.0; // every k-subset holds a correct sample
        }
        double none = 1.0;
        for (int i = n - c + 1; i <= n; i++) {
            none *= 1.0 - (double) k / i;
        }
        return 1.0 - none;
    }

    /**
     * pass@k for every k from 1 to n at once, index k (index 0 unused): the share of k-subsets holding no
     * correct sample, C(n−c, k)/C(n, k), follows from k−1's by the factor (n−c−k+1)/(n−k+1), so all n
     * cost O(n) where {@link #of} each costs O(c).
     */
    public static double[] all(int n, int c) {
        if (n < 1 || c < 0 || c > n) {
            throw new IllegalArgumentException("pass@k needs n ≥ 1 and 0 ≤ c ≤ n, got n=" + n + " c=" + c);
        }
        double[] out = new double[n + 1];
        double none = 1.0;
        for (int k = 1; k <= n; k++) {
            none *= Math.max(0, n - c - k + 1) / (double) (n - k + 1);
            out[k] = 1.0 - none;
        }
        out[1] = (double) c / n;
        return out;
    }
}
