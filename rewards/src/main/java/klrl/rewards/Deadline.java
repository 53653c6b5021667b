package klrl.rewards;

/** A cooperative time limit: parsing and evaluation check it, so no thread is ever needed or leaked. */
final class Deadline {
    static final class Expired extends RuntimeException {
        Expired() {
            super("verification timed out", null, false, false);
        }
    }

    private final long end;

    Deadline(long nanos) {
        this.end = System.nanoTime() + nanos;
    }

    void check() {
        if (System.nanoTime() > end) {
            throw new Expired();
        }
    }
}
