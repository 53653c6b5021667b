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
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
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
            Files.writeString(mark(other.pid()), CpuShare.mark(other.pid()));
            assertEquals(THREADS / 2, share.adjust());
            assertEquals(THREADS / 2, JniUtils.getNumThreads());
            other.destroy();
            other.waitFor();
            assertEquals(THREADS, share.adjust(), "the other ended: every thread again");
            assertFalse(Files.exists(mark(other.pid())), "the ended trainer's mark was removed");
            Process third = sleeper();
            try {
                Files.writeString(mark(third.pid()), CpuShare.mark(third.pid()));
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
    void aMarkCountsOnlyWhileTheTrainerThatWroteItRuns() throws Exception {
        Process trainer = sleeper(), program = sleeper(); // live processes: one marked as it marks itself, one not a trainer
        long self = ProcessHandle.current().pid();
        try (CpuShare share = CpuShare.start(dir, ENV, JniUtils::getNumThreads)) {
            // process 1 (init, or a container's first process) runs, but is not the trainer whose start the mark names
            Files.writeString(mark(1), CpuShare.mark(trainer.pid()));
            // a trainer that ended without removing its mark, whose id another program now has
            Files.writeString(mark(program.pid()), CpuShare.mark(self));
            assertEquals(THREADS, share.adjust(), "neither counts");
            assertFalse(Files.exists(mark(1)), "a mark whose trainer has ended is removed");
            assertFalse(Files.exists(mark(program.pid())), "a mark whose trainer has ended is removed");

            // a mark of another machine or container, and one without a start (an older version's): not told here
            String elsewhere = CpuShare.mark(program.pid()).replace("machine=" + CpuShare.MACHINE, "machine=another-boot pid:[1]");
            Files.writeString(mark(program.pid()), elsewhere);
            Files.writeString(mark(1), "");
            assertEquals(THREADS, share.adjust(), "neither counts");
            assertEquals(elsewhere, Files.readString(mark(program.pid())), "left to its own machine's trainers");
            assertTrue(Files.exists(mark(1)), "left while process 1 runs");

            Files.writeString(mark(trainer.pid()), CpuShare.mark(trainer.pid()));
            assertEquals(THREADS / 2, share.adjust(), "the live trainer's own mark counts");
        } finally {
            trainer.destroy();
            program.destroy();
        }
    }

    @Test
    void everyRegisteredComputingThreadTakesItsShareBeforeItsNextWork() throws Exception {
        ExecutorService worker = Executors.newSingleThreadExecutor(), plain = Executors.newSingleThreadExecutor();
        Process other = sleeper();
        try {
            int unregistered = plain.submit(JniUtils::getNumThreads).get();
            // a worker with its own count, as data-parallel replicas, pipeline stages and the rollout copy set theirs
            worker.submit(() -> {
                JniUtils.setNumThreads(6);
                CpuShare.thread(6);
            }).get();
            try (CpuShare share = CpuShare.start(dir, ENV, JniUtils::getNumThreads)) {
                assertEquals(6, worker.submit(CpuShare::follow).get(), "alone: every thread");
                Files.writeString(mark(other.pid()), CpuShare.mark(other.pid()));
                share.adjust();
                assertEquals(3, worker.submit(CpuShare::follow).get());
                assertEquals(3, worker.submit(JniUtils::getNumThreads).get());
                assertEquals(0, plain.submit(CpuShare::follow).get(), "a thread not registered is left alone");
                assertEquals(unregistered, plain.submit(JniUtils::getNumThreads).get());
            }
            assertEquals(6, worker.submit(CpuShare::follow).get(), "the share ended: every thread again");
            assertEquals(6, worker.submit(JniUtils::getNumThreads).get());
        } finally {
            other.destroy();
            worker.shutdownNow();
            plain.shutdownNow();
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
