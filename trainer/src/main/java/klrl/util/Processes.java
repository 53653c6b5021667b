package klrl.util;

import java.util.Map;

/** Child processes of this JVM, and this JVM as a child. */
public final class Processes {
    private Processes() {}

    /** The pid of the process that started this one, for it to watch (see {@link #endWithStarter}). */
    public static final String STARTER_PID = "KLRL_LAUNCHER_PID";
    /** How often a child looks at its parent: a read of /proc, nothing beside a step, and the end follows within a second. */
    private static final long WATCH_MILLIS = 250;

    /**
     * Sends SIGTERM to {@code p} and waits for it to exit: a trainer child finishes its step and
     * checkpoints first. For shutdown hooks, so a stopped parent leaves no half-written child behind.
     */
    public static void terminateAndWait(Process p) {
        p.destroy();
        try {
            p.waitFor();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Makes the process {@code pb} starts end when this one ends, whatever the signal (it calls {@link #endWithStarter}). */
    public static void endWithThisProcess(ProcessBuilder pb) {
        pb.environment().put(STARTER_PID, Long.toString(ProcessHandle.current().pid()));
    }

    /**
     * In a process started by the launcher or a grid: ends this JVM when its starter is gone, so a
     * starter killed with SIGKILL (which runs no shutdown hook to pass the signal on) leaves no trainer
     * behind that keeps training and holds the run folder's lock. Java has no
     * prctl(PR_SET_PDEATHSIG), so a daemon thread polls: the starter is alive exactly as long as it is
     * this process's parent (when it dies the child is reparented at once, even while the starter is an
     * unreaped zombie, and a reused pid is never the parent). The starter passes its pid rather than
     * the child taking its parent at start: a starter killed while this JVM was starting would
     * otherwise leave init as the parent being watched. Stopping is a halt, as SIGKILL would be: no
     * shutdown hook, so no half-written checkpoint; the checkpoints already written are complete.
     */
    public static void endWithStarter(Map<String, String> env) {
        long starter;
        try {
            starter = Long.parseLong(env.getOrDefault(STARTER_PID, "-1"));
        } catch (NumberFormatException notSet) {
            return;
        }
        if (starter < 0) {
            return;
        }
        ProcessHandle self = ProcessHandle.current();
        if (gone(self, starter)) {
            // a process that inherited the variable from further up (a build tool's child, say) watches nothing
            for (var p = self.parent(); p.isPresent(); p = p.get().parent()) {
                if (p.get().pid() == starter) {
                    return;
                }
            }
            starterEnded(starter); // gone before this JVM got here
        }
        Thread watch = new Thread(() -> {
            while (!gone(self, starter)) {
                try {
                    Thread.sleep(WATCH_MILLIS);
                } catch (InterruptedException e) {
                    return;
                }
            }
            starterEnded(starter);
        }, "starter-watch");
        watch.setDaemon(true);
        watch.start();
    }

    /**
     * Whether the starter is gone: this process's parent is another one, or, when the parent cannot be
     * read (a passing failure to read /proc), no process has the starter's pid. One failed read stops no one.
     */
    private static boolean gone(ProcessHandle self, long starter) {
        return self.parent().map(p -> p.pid() != starter).orElseGet(() -> ProcessHandle.of(starter).isEmpty());
    }

    private static void starterEnded(long starter) {
        System.err.println("error: the process that started this trainer (pid " + starter + ") ended, so the trainer stops without a"
                + " checkpoint; resume from the last one with --resume");
        java.lang.Runtime.getRuntime().halt(1);
    }
}
