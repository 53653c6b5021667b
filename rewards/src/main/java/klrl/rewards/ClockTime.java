package klrl.rewards;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A time of day written h:mm: two-digit minutes 00–59 and an hour 0–23, or 1–12 with a.m./p.m.
 * ("9:30", "09:30", "9:30 p.m.", "\text{7:05 AM}"). Read before the ratio rule turns a:b into a/b,
 * since 9:30 and 3:10 are one ratio but two times.
 *
 * @param minutes      minutes after midnight; a time without a.m./p.m. is on the 24-hour clock
 * @param unmistakable written so that no ratio is meant: with a.m./p.m., or with a leading zero
 *                     (09:30, 1:05 — a ratio is never written so)
 */
record ClockTime(int minutes, boolean unmistakable) {
    private static final Pattern TIME = Pattern.compile("(\\d{1,2}):(\\d{2})(?:\\s*([ap])\\.?\\s*m\\.?)?\\.?",
            Pattern.CASE_INSENSITIVE);

    /** The time an answer states, or null when it is not one time h:mm. */
    static ClockTime read(String answer) {
        if (answer == null || answer.length() > 80 || answer.indexOf(':') < 0) { // most answers: no colon, no time
            return null;
        }
        Matcher m = TIME.matcher(clean(answer));
        if (!m.matches()) {
            return null;
        }
        String hh = m.group(1), mm = m.group(2), half = m.group(3);
        int h = Integer.parseInt(hh), min = Integer.parseInt(mm);
        if (min > 59) {
            return null;
        }
        if (half == null) {
            return h > 23 ? null : new ClockTime(h * 60 + min, hh.length() == 2 && hh.charAt(0) == '0' || mm.charAt(0) == '0');
        }
        if (h < 1 || h > 12) {
            return null;
        }
        // 12 a.m. is midnight, 12 p.m. noon
        return new ClockTime((h % 12 + (Character.toLowerCase(half.charAt(0)) == 'p' ? 12 : 0)) * 60 + min, true);
    }

    /** Without math delimiters, \text{}-style wrappers, LaTeX spaces and grouping braces (9{:}30). */
    private static String clean(String s) {
        String t = s.strip();
        for (String[] d : new String[][] {{"$$", "$$"}, {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}}) {
            if (t.length() >= d[0].length() + d[1].length() && t.startsWith(d[0]) && t.endsWith(d[1])) {
                t = t.substring(d[0].length(), t.length() - d[1].length());
            }
        }
        t = t.replace("\\,", " ").replace("\\;", " ").replace("\\!", "").replace("\\ ", " ").replace("~", " ");
        return Normalizer.unwrap(t).replace("{", "").replace("}", "").replaceAll("\\s+", " ").strip();
    }

    /** On the 24-hour clock: 9:30, 21:30. */
    @Override
    public String toString() {
        return String.format("%d:%02d", minutes / 60, minutes % 60);
    }
}
