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
        if (n - c < k) {
            return 1.0; // every k-subset holds a correct sample
        }
        double none = 1.0;
        for (int i = n - c + 1; i <= n; i++) {
            none *= 1.0 - (double) k / i;
        }
        return 1.0 - none;
    }
}
