package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.TestPaths;
import klrl.util.Json;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * scripts/mkl-on-amd.c, preloaded as scripts/env.sh preloads it, must switch MKL's kernels (the
 * process reports it) and leave results within float rounding of MKL's own choice.
 */
@Tag("e2e") // whole runs and subprocesses: after the unit tests
class MklOnAmdTest {
    @TempDir Path tmp;

    @Test
    void preloadedItChangesMklsKernelsButNotTheLogprobs() throws Exception {
        String cpu = Files.readString(Path.of("/proc/cpuinfo"));
        assumeTrue(cpu.contains("AuthenticAMD") && cpu.matches("(?s).*\\bavx512f\\b.*"),
                "scripts/env.sh preloads scripts/mkl-on-amd.c only on AMD CPUs with AVX-512; this CPU is not one");
        Path so = tmp.resolve("libmkl-on-amd.so");
        Process cc;
        try {
            cc = new ProcessBuilder("cc", "-shared", "-fPIC", "-O2", "-o", so.toString(),
                    Path.of("../scripts/mkl-on-amd.c").toAbsolutePath().toString()).redirectErrorStream(true).start();
        } catch (java.io.IOException noCompiler) {
            assumeTrue(false, "no C compiler (cc): scripts/env.sh does not preload the shim here either");
            return;
        }
        String ccOut = new String(cc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, cc.waitFor(), "cc failed: " + ccOut);

        String model = TestPaths.fixture("qwen2-bf16-sharded").toString();
        String[] logprobs = {"logprobs", "--model", model, "--input-ids", "3,141,59,26,53,58,97,93"};
        JsonNode preloaded = Json.MAPPER.readTree(child(so, logprobs));
        JsonNode plain = Json.MAPPER.readTree(child(null, logprobs));
        int compared = 0, differ = 0;
        for (int i = 0; i < plain.get("logprobs").size(); i++) {
            JsonNode a = plain.get("logprobs").get(i), b = preloaded.get("logprobs").get(i);
            if (!a.isNull()) {
                assertEquals(a.asDouble(), b.asDouble(), 1e-5, "log-prob " + i);
                compared++;
                differ += a.asDouble() != b.asDouble() ? 1 : 0;
            }
        }
        assertEquals(7, compared);
        // other kernels round differently (~1e-6 here): proof that MKL took the preloaded answer
        assertTrue(differ > 0, "preloading changed no result: does libtorch's MKL still call mkl_serv_intel_cpu_true through the PLT?");

        JsonNode env = Json.MAPPER.readTree(child(so, "bench", "--only", "verifier", "--repeats", "1")).get("environment");
        assertTrue(env.get("mkl_kernels").asText().contains("preloaded"), env.toString());
        // and no false report in this JVM, which (unless someone preloaded it) runs without
        boolean here = String.valueOf(System.getenv("LD_PRELOAD")).contains("libmkl-on-amd.so");
        assertEquals(here, klrl.util.Runtime.mklKernels().contains("preloaded"), klrl.util.Runtime.mklKernels());
    }

    /** Runs trainer's Main in a fresh JVM (LD_PRELOAD only acts at process start) and returns its stdout. */
    private String child(Path preload, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "klrl.cli.Main"));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().remove("LD_PRELOAD");
        if (preload != null) {
            pb.environment().put("LD_PRELOAD", preload.toString());
        }
        Path err = tmp.resolve("stderr.txt");
        pb.redirectError(err.toFile());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), String.join(" ", args) + ": " + Files.readString(err));
        return out;
    }
}
