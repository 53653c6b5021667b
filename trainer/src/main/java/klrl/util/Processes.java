package klrl.util;

/** Child processes of this JVM. */
public final class Processes {
    private Processes() {}

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
}
