package klrl.eval;

import java.util.ArrayList;
import java.util.List;
import java.util.function.BiPredicate;

/**
 * Majority voting over a prompt's samples (maj@N): answers the verifier judges equal are one answer.
 * Each answer joins the first class, in order of first appearance, whose first answer it equals; a
 * sample without an answer votes for nothing. The class with the most votes wins; a class is correct
 * when its first sample is; when classes tie, maj@N is the share of the tied ones that are correct
 * (ties split evenly). No answer at all scores 0. The verifier's equality need not be transitive ("3",
 * "x=3", "y=3"), so classes follow the order of the samples; the classes written beside the samples are
 * the ones counted.
 */
public final class Majority {
    private Majority() {}

    /** For each answer the index of its class (0, 1, … by first appearance), or -1 where there is none. */
    public static int[] classes(List<String> answers, BiPredicate<String, String> same) {
        int[] out = new int[answers.size()];
        List<String> heads = new ArrayList<>();
        // an answer written as one before joins that one's class without a check: at N = 1,024 most
        // answers repeat, and the checks are the cost
        java.util.Map<String, Integer> seen = new java.util.HashMap<>();
        for (int i = 0; i < answers.size(); i++) {
            String a = answers.get(i);
            out[i] = -1;
            if (a == null || a.isBlank()) {
                continue;
            }
            Integer known = seen.get(a.strip());
            if (known != null) {
                out[i] = known;
                continue;
            }
            for (int c = 0; c < heads.size() && out[i] < 0; c++) {
                if (same.test(heads.get(c), a)) {
                    out[i] = c;
                }
            }
            if (out[i] < 0) {
                out[i] = heads.size();
                heads.add(a);
            }
            seen.put(a.strip(), out[i]);
        }
        return out;
    }

    /** maj@N from the classes and each sample's verdict, by the rule above. */
    public static double score(int[] classes, boolean[] correct) {
        int n = 0;
        for (int c : classes) {
            n = Math.max(n, c + 1);
        }
        int[] votes = new int[n];
        boolean[] right = new boolean[n];
        boolean[] seen = new boolean[n];
        for (int i = 0; i < classes.length; i++) {
            int c = classes[i];
            if (c >= 0) {
                votes[c]++;
                if (!seen[c]) {
                    seen[c] = true;
                    right[c] = correct[i];
                }
            }
        }
        int top = 0, tied = 0, tiedRight = 0;
        for (int c = 0; c < n; c++) {
            if (votes[c] > top) {
                top = votes[c];
                tied = 0;
                tiedRight = 0;
            }
            if (votes[c] == top && top > 0) {
                tied++;
                tiedRight += right[c] ? 1 : 0;
            }
        }
        return tied == 0 ? 0.0 : (double) tiedRight / tied;
    }
}
