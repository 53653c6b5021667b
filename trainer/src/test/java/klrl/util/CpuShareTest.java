package klrl.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.JniUtils;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Trainers on one CPU machine share its cores: counted by their marks, real processes alive or gone. */
class CpuShareTest {
    @TempDir Path dir;

    @Test
    void anotherRunningTrainerHalvesThisOnesThreadsAndItsEndRestoresThem() throws Exception {
        Engine.getEngine("PyTorch");
        int base = JniUtils.getNumThreads();
        Process other = new ProcessBuilder("sleep", "60").start(); // stands for another trainer: a live process with a mark
        Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        Files.writeString(dir.resolve(Long.toString(gone.pid())), ""); // a dead trainer's mark: not counted, removed
        try (CpuShare share = CpuShare.start(dir, true)) {
            if (share == null) {
                assertTrue(System.getenv("OMP_NUM_THREADS") != null || System.getProperty("ai.djl.pytorch.num_threads") != null
                        || "0".equals(System.getenv("KLRL_SHARE_CORES")), "no share though threads were not set by hand");
                return;
            }
            assertEquals(1, share.running(), "alone");
            assertEquals(base, JniUtils.getNumThreads(), "a lone trainer keeps every thread");
            assertFalse(Files.exists(dir.resolve(Long.toString(gone.pid()))), "the dead process's mark was removed");
            Files.writeString(dir.resolve(Long.toString(other.pid())), "");
            assertEquals(2, share.running());
            assertEquals(Math.max(1, base / 2), share.adjust());
            assertEquals(Math.max(1, base / 2), JniUtils.getNumThreads());
            other.destroy();
            other.waitFor();
            assertEquals(base, share.adjust(), "the other ended: every thread again");
        } finally {
            other.destroy();
        }
        assertEquals(base, JniUtils.getNumThreads());
        assertFalse(Files.exists(dir.resolve(Long.toString(ProcessHandle.current().pid()))), "its own mark goes at the end");
    }
}
