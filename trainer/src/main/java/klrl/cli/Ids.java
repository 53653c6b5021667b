package klrl.cli;

import klrl.util.UserError;

final class Ids {
    private Ids() {}

    static long[] parse(String csv, String flag, long vocab) {
        String[] parts = csv.split(",");
        long[] ids = new long[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                ids[i] = Long.parseLong(parts[i].trim());
            } catch (NumberFormatException e) {
                throw new UserError(flag + ": '" + parts[i] + "' is not an integer token id");
            }
            if (ids[i] < 0 || ids[i] >= vocab) {
                throw new UserError(flag + ": token id " + ids[i] + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        return ids;
    }
}
