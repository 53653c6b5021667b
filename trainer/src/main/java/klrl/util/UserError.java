package klrl.util;

/**
 * A problem with the user's input (a file, a field, a flag). The CLI prints its message as one line
 * and exits non-zero, without a stack trace; everything else is a bug and keeps its trace.
 */
public class UserError extends RuntimeException {
    public UserError(String message) {
        super(message);
    }

    public UserError(String message, Throwable cause) {
        super(message, cause);
    }
}
