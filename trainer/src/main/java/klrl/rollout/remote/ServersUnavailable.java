package klrl.rollout.remote;

import klrl.util.UserError;

/** No server could answer a request (or take a new version of the weights) within the retries allowed. */
public final class ServersUnavailable extends UserError {
    public ServersUnavailable(String message) {
        super(message);
    }
}
