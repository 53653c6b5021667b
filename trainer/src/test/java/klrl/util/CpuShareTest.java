package klrl.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.JniUtils;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Trainers on one CPU machine share its cores: counted by their marks, real processes alive or gone.
 * The environment is given explicitly, so the tests do not depend on the one they run in.
 */
class CpuShareTest {
    /** This trainer's libtorch threads when alone: a half differs from it on any machine. */
    static final int THREADS = 8;
    static final Map<String, String> ENV = Map.of();

    @TempDir Path dir;
    private int before;

    @BeforeEach
    void engine() {
        Engine.getEngine("PyTorch");
        before = JniUtils.getNumThreads();
        JniUtils.setNumThreads(THREADS);
    }

    @AfterEach
    void restore() {
        JniUtils.setNumThreads(before); // this thread's count as the other tests in this JVM had it
    }

    private Path mark(long pid) {
        return dir.resolve(Long.toString(pid));
    }

    private static Process sleeper() throws Exception {
        return new ProcessBuilder("sleep", "60").start();
    }

    @Test
    void aloneItKeepsEveryThreadAnotherTrainerHalvesThemAndItsEndRestoresThem() throws Exception {
        Process other = sleeper(); // stands for another trainer: a live process with a mark
        try (CpuShare share = CpuShare.start(dir, ENV, JniUtils::getNumThreads)) {
            assertNotNull(share);
            assertEquals(THREADS, JniUtils.getNumThreads(), "a lone trainer keeps every thread");
            assertTrue(Files.exists(mark(ProcessHandle.current().pid())), "its own mark");
            Files.writeString(mark(other.pid()), "");
            assertEquals(THREADS / 2, share.adjust());
            assertEquals(THREADS / 2, JniUtils.getNumThreads());
            other.destroy();
            other.waitFor();
            assertEquals(THREADS, share.adjust(), "the other ended: every thread again");
            assertFalse(Files.exists(mark(other.pid())), "the ended trainer's mark was removed");
            Process third = sleeper();
            try {
                Files.writeString(mark(third.pid()), "");
                assertEquals(THREADS / 2, share.adjust());
            } finally {
                third.destroy();
            }
        } finally {
            other.destroy();
        }
        assertEquals(THREADS, JniUtils.getNumThreads(), "its end gives the thread its count back");
        assertFalse(Files.exists(mark(ProcessHandle.current().pid())), "its own mark goes at the end");
    }

    @Test
    void aDeadProcesssMarkIsNotCountedAndIsRemoved() throws Exception {
        Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        Files.writeString(mark(gone.pid()), "");
        try (CpuShare share = CpuShare.start(dir, ENV, JniUtils::getNumThreads)) {
            assertEquals(THREADS, share.adjust(), "alone");
            assertFalse(Files.exists(mark(gone.pid())), "the dead process's mark was removed");
        }
    }

    @Test
    void threadsSetByHandOrTheSharingTurnedOffMeanNoShare() throws Exception {
        assertNull(CpuShare.start(dir, Map.of("KLRL_SHARE_CORES", "0"), JniUtils::getNumThreads));
        assertNull(CpuShare.start(dir, Map.of("OMP_NUM_THREADS", "3"), JniUtils::getNumThreads));
        try (var files = Files.list(dir)) {
            assertEquals(0, files.count(), "no mark: other trainers do not count one that does not share");
        }
        try (CpuShare share = CpuShare.start(dir, Map.of("KLRL_SHARE_CORES", "1"), JniUtils::getNumThreads)) {
            assertNotNull(share, "only 0 turns it off");
        }
    }
}
