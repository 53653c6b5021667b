package klrl.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import klrl.rewards.Verifier;
import org.junit.jupiter.api.Test;

class MajorityTest {
    @Test
    void majorityCountsVerifierEqualAnswersAsOneAndSplitsTies() {
        Verifier v = new Verifier();
        List<String> answers = Arrays.asList("1/2", "0.5", "3", "\\frac{1}{2}", null, "3", " 3 ");
        int[] classes = Majority.classes(answers, v::sameAnswer);
        assertArrayEquals(new int[] {0, 0, 1, 0, -1, 1, 1}, classes);
        boolean[] correct = {true, true, false, true, false, false, false}; // gold 1/2
        assertEquals(0.5, Majority.score(classes, correct), 0); // 3 votes each: one of two tied classes is right
        assertEquals(1.0, Majority.score(new int[] {0, 0, 1, 0, -1, 1}, correct), 0);
        assertEquals(0.0, Majority.score(new int[] {-1, -1}, new boolean[] {false, false}), 0);
        // a class is as right as its first sample
        assertEquals(0.0, Majority.score(new int[] {0, 0}, new boolean[] {false, true}), 0);
    }

    @Test
    void anAnswerWrittenAsBeforeCostsNoCheck() {
        Verifier v = new Verifier();
        AtomicInteger checks = new AtomicInteger();
        List<String> answers = Arrays.asList("7", "8", "9", "9", "9 ", "0.5", "1/2", "9", "8");
        int[] classes = Majority.classes(answers, (a, b) -> {
            checks.incrementAndGet();
            return v.sameAnswer(a, b);
        });
        assertArrayEquals(new int[] {0, 1, 2, 2, 2, 3, 3, 2, 1}, classes);
        assertEquals(0 + 1 + 2 + 3 + 4, checks.get()); // "8": 1, "9": 2, "0.5": 3, "1/2": 4; the repeats none
    }
}
