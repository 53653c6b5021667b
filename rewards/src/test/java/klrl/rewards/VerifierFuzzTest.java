package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.util.List;

/**
 * The verifier on arbitrary gold answers and completions: it never throws, and it answers within its
 * deadline (cooperative, no threads) plus the time of one step. Plain test runs replay the seeds in
 * src/test/resources/klrl/rewards/VerifierFuzzTestInputs/ and every finding kept there;
 * {@code JAZZER_FUZZ=1 mvn test -pl rewards -Dtest=VerifierFuzzTest} fuzzes (see src/site/markdown/fuzzing.md).
 */
class VerifierFuzzTest {
    static final Verifier VERIFIER = new Verifier(100, List.of());

    @FuzzTest(maxDuration = "10m")
    void verifyNeverThrowsAndKeepsItsDeadline(FuzzedDataProvider data) {
        String gold = data.consumeString(200);
        String completion = data.consumeRemainingAsString();
        long t0 = System.nanoTime();
        Verifier.Result r = VERIFIER.verify(gold, completion);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertNotNull(r);
        assertTrue(ms < 1_000, "verify took " + ms + " ms (deadline 100 ms)");
    }
}
