package klrl.rewards;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * String-level clean-up of an extracted answer before parsing, following the rules users know from
 * Math-Verify and the MATH benchmark's normaliser: delimiters, spacing commands, \left/\right,
 * \text{}-style wrappers, units and degrees, percent and dollar signs, thousands separators,
 * trailing punctuation, unicode operators, and mixed numbers.
 */
final class Normalizer {
    private Normalizer() {}

    private static final List<String> UNITS = List.of(
            "square units", "sq units", "units", "unit", "square feet", "square inches", "square meters", "square cm",
            "cubic feet", "cubic inches", "cubic meters", "cubic cm",
            "degrees", "degree", "radians", "cm", "mm", "km", "meters", "meter", "m", "inches", "inch", "in", "feet", "foot",
            "ft", "yards", "yd", "miles", "mile", "mph", "hours", "hour", "hrs", "minutes", "minute", "min", "seconds",
            "second", "sec", "days", "day", "weeks", "years", "year", "dollars", "dollar", "cents", "cent", "pounds",
            "lbs", "ounces", "oz", "grams", "gram", "g", "kg", "liters", "liter", "ml", "mL", "people", "students",
            "points", "ways", "times", "percentage", "percent", "pct");
    private static final Pattern UNIT_TAIL;

    static {
        StringBuilder alt = new StringBuilder();
        for (String u : UNITS) {
            alt.append(alt.length() == 0 ? "" : "|").append(Pattern.quote(u));
        }
        // a unit (optionally squared/cubed) after a number or closing bracket, at the end
        UNIT_TAIL = Pattern.compile("(?<=[\\d)}\\s])\\s*(?:" + alt + ")(?:\\s*\\^\\s*\\{?[23]\\}?)?\\s*$");
    }

    /** LaTeX commands rewritten to the parser's operators (whole command names only). */
    private static final String[][] COMMANDS = {
        {"cdot", "*"}, {"times", "*"}, {"ast", "*"}, {"div", "/"},
        {"leqslant", "<="}, {"geqslant", ">="}, {"leq", "<="}, {"geq", ">="}, {"le", "<="}, {"ge", ">="},
        {"neq", "!="}, {"ne", "!="}, {"lt", "<"}, {"gt", ">"}, {"in", "="}, {"dfrac", "\\frac"}, {"tfrac", "\\frac"},
    };

    private static final Pattern WRAPPERS = Pattern.compile(
            "\\\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname|textnormal|boldsymbol|mathsf)\\s*\\{");
    /** 7,425,000 — but not right after "(" or "[", where 12,102 is an interval's or tuple's two ends. */
    private static final Pattern THOUSANDS = Pattern.compile("(?<![\\d.(\\[])(\\d{1,3})((?:,\\d{3})+)(?![\\d])");
    private static final Pattern DECIMAL_COMMA = Pattern.compile("-?(?:\\d+,\\d{2}|\\d+,\\d{4,}|0,\\d+)");
    private static final Pattern THIN_SPACE_THOUSANDS = Pattern.compile("(?<=\\d),\\s*\\\\[!,;:]\\s*(?=\\d{3}(?!\\d))");
    private static final Pattern SPACED_THOUSANDS = Pattern.compile("(?<=\\d) (?=\\d{3}(?!\\d))");
    /** A ratio a:b of numbers or names (a_1, AB), or one assigned to another (S_1:S_2=3:8); nothing else has a colon. */
    private static final Pattern RATIO = Pattern.compile("\\s*[\\w.{}]+\\s*:\\s*[\\w.{}]+\\s*(=\\s*[\\w.{}]+\\s*:\\s*[\\w.{}]+\\s*)?");
    private static final Pattern RATIO_SIDE = Pattern.compile("([\\w.{}]+)\\s*:\\s*([\\w.{}]+)");
    /** "3 2/7", "-3 2/7": a whole number, spaces or tabs (never a line break), a proper fraction. */
    private static final Pattern PLAIN_MIXED = Pattern.compile("(?<![\\d.,/}\\w])(\\d+)[ \\t]+(\\d+)/(\\d+)(?![\\d./])");
    private static final Pattern MIXED = Pattern.compile("(?<![\\d.}])(\\d+)\\s*\\\\frac\\s*\\{?(\\d+)\\}?\\s*\\{?(\\d+)\\}?");

    static String normalize(String in) {
        String s = in.replaceAll("(?<!\\\\)\\\\ ", " ").strip();
        // a doubled backslash before a command name is the command (an answer copied from escaped source)
        s = s.replaceAll("(?<!\\\\)\\\\\\\\(?=[a-zA-Z])", Matcher.quoteReplacement("\\"));
        // "x \\in S" answers S
        s = s.replaceFirst("^[a-zA-Z]\\s*\\\\in(?![a-zA-Z])\\s*(?=\\S)", "");
        // a lone number with a decimal comma: 1000,99, 1,22 and 0,111 (a comma before exactly three digits
        // after a non-zero integer part is a thousands separator, 7,425; before one digit, a list: 2,3)
        if (DECIMAL_COMMA.matcher(s).matches()) {
            s = s.replace(',', '.');
        }
        if (s.endsWith("\\") && !s.endsWith("\\\\")) {
            s = s.substring(0, s.length() - 1).strip();
        }
        s = stripDelimiters(s);
        s = s.replace("\\displaystyle", "").replace("\\left.", "").replace("\\right.", "")
                .replace("\\left", "").replace("\\right", "")
                .replaceAll("\\\\(?:big|Big|bigg|Bigg)[lr]?", "");
        s = THIN_SPACE_THOUSANDS.matcher(s).replaceAll(","); // 11,\! 111 (LaTeX-spaced digit groups)
        s = s.replace("\\!", "").replace("\\,", " ").replace("\\;", " ").replace("\\:", " ")
                .replace("\\qquad", " ").replace("\\quad", " ").replace("~", " ");
        s = s.replaceAll("(?<!\\\\)\\\\ ", " "); // "\ " is a space, but "\\\\ " ends a matrix row
        s = unwrap(s);
        s = s.replaceAll("\\{,\\s*\\}", "");
        s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\circ", "").replace("°", "").replace("\\degree", "");
        s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "");
        s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}");
        for (String[] c : COMMANDS) {
            s = s.replaceAll("\\\\" + c[0] + "(?![a-zA-Z])", Matcher.quoteReplacement(c[1]));
        }
        s = s.replace("=<", "<=").replace("=>", ">=").replace(":=", "=");
        s = s.replace("−", "-").replace("–", "-").replace("×", "*").replace("·", "*").replace("÷", "/")
                .replace("≤", "<=").replace("≥", ">=").replace("≠", "!=").replace("π", "\\pi ").replace("∞", "\\infty ")
                .replace("√", "\\sqrt").replace("∪", "\\cup ");
        // "x = 1/3 \approx 0.33": the exact value before ≈ is the answer; a lone "x \approx 11" reads as "="
        int approx = s.indexOf("\\approx");
        if (approx >= 0) {
            s = s.substring(0, approx).contains("=") ? s.substring(0, approx) : s.replace("\\approx", "=");
        }
        s = stripUnits(s);
        s = THOUSANDS.matcher(s).replaceAll(m -> m.group(1) + m.group(2).replace(",", ""));
        s = SPACED_THOUSANDS.matcher(s).replaceAll("");
        s = mixedNumbers(s);
        s = s.strip();
        while (!s.isEmpty() && ".,;:".indexOf(s.charAt(s.length() - 1)) >= 0
                && !(s.endsWith(".") && s.length() > 1 && Character.isDigit(s.charAt(s.length() - 2)) && s.indexOf('.') != s.length() - 1)) {
            s = s.substring(0, s.length() - 1).strip();
        }
        if (s.endsWith(".")) {
            s = s.substring(0, s.length() - 1);
        }
        // "3:8" and "S_1:S_2=3:8": a ratio of two plain terms is their quotient (so a labelled ratio is its value)
        if (RATIO.matcher(s).matches()) {
            s = RATIO_SIDE.matcher(s).replaceAll("($1)/($2)");
        }
        s = assignmentGroups(s);
        // "(1;-3;4)": semicolons separate where no comma does (a decimal comma was read above)
        if (s.indexOf(';') >= 0 && s.indexOf(',') < 0) {
            s = s.replace(';', ',');
        }
        return s.strip();
    }

    private static String stripDelimiters(String s) {
        boolean changed = true;
        while (changed) {
            changed = false;
            for (String[] d : new String[][] {{"$$", "$$"}, {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}}) {
                if (s.length() >= d[0].length() + d[1].length() && s.startsWith(d[0]) && s.endsWith(d[1])) {
                    s = s.substring(d[0].length(), s.length() - d[1].length()).strip();
                    changed = true;
                }
            }
        }
        return s;
    }

    /** \text{abc} → abc (content kept, braces balanced). */
    static String unwrap(String s) {
        Matcher m = WRAPPERS.matcher(s);
        StringBuilder out = new StringBuilder();
        int pos = 0;
        while (m.find(pos)) {
            out.append(s, pos, m.start());
            int depth = 1, k = m.end();
            while (k < s.length() && depth > 0) {
                char c = s.charAt(k);
                depth += c == '{' ? 1 : c == '}' ? -1 : 0;
                k++;
            }
            String inner = s.substring(m.end(), depth == 0 ? k - 1 : k);
            out.append(' ').append(unwrap(inner)).append(' ');
            pos = k;
        }
        out.append(s.substring(pos));
        return out.toString().replaceAll("\\s+", " ").strip();
    }

    static String stripUnits(String s) {
        for (int k = 0; k < 3; k++) {
            Matcher m = UNIT_TAIL.matcher(s);
            if (!m.find() || m.start() == 0) {
                break;
            }
            String rest = s.substring(0, m.start()).strip();
            if (rest.isEmpty()) {
                break;
            }
            s = rest;
        }
        return s;
    }

    /**
     * 2\frac{1}{2} and plain "2 1/2" → (2+\frac{1}{2}) when the fraction is proper (the MATH convention
     * for mixed numbers); "-3 2/7" is −(3 + 2/7). "5 + 2/7" says what it says, "3 2/0" is no number.
     */
    static String mixedNumbers(String s) {
        s = PLAIN_MIXED.matcher(s).replaceAll(r -> {
            try {
                long a = Long.parseLong(r.group(2)), b = Long.parseLong(r.group(3));
                return b > 0 && a < b ? Matcher.quoteReplacement("(" + r.group(1) + "+\\frac{" + a + "}{" + b + "})") : r.group();
            } catch (NumberFormatException e) {
                return r.group();
            }
        });
        Matcher m = MIXED.matcher(s);
        StringBuilder out = new StringBuilder();
        int pos = 0;
        while (m.find()) {
            try {
                long a = Long.parseLong(m.group(2)), b = Long.parseLong(m.group(3));
                if (a < b) {
                    out.append(s, pos, m.start()).append("(").append(m.group(1)).append("+\\frac{").append(a)
                            .append("}{").append(b).append("})");
                    pos = m.end();
                }
            } catch (NumberFormatException ignored) {
                // too long to be a mixed number: leave as written
            }
        }
        out.append(s.substring(pos));
        return out.toString();
    }

    private static final Pattern ASSIGNMENT = Pattern.compile("\\s*([A-Za-z](?:_\\{?\\w+\\}?)?)\\s*=\\s*([^=,;]+?)\\s*");

    /**
     * Solutions written as groups of assignments, "a=3,b=1; a=4,b=1", are the tuples
     * "(3,1),(4,1)" when every group assigns the same names in the same order; else unchanged.
     */
    static String assignmentGroups(String s) {
        String[] groups = s.split("\\s*;\\s*");
        if (groups.length < 2) {
            return s;
        }
        List<String> names = null, tuples = new ArrayList<>();
        for (String g : groups) {
            List<String> ns = new ArrayList<>(), vs = new ArrayList<>();
            for (String item : g.split(",")) {
                Matcher m = ASSIGNMENT.matcher(item);
                if (!m.matches()) {
                    return s;
                }
                ns.add(m.group(1));
                vs.add(m.group(2));
            }
            if (names != null && !names.equals(ns)) {
                return s;
            }
            names = ns;
            tuples.add(ns.size() == 1 ? vs.get(0) : "(" + String.join(",", vs) + ")");
        }
        return String.join(",", tuples);
    }

    /** Text answers compare case- and space-insensitively, without wrappers and outer brackets. */
    static String text(String s) {
        String t = unwrap(stripDelimiters(s.strip())).toLowerCase(java.util.Locale.ROOT)
                .replaceAll("[\\s\\\\]", "");
        while (t.length() >= 2 && ("({[".indexOf(t.charAt(0)) >= 0) && (")}]".indexOf(t.charAt(t.length() - 1)) >= 0)) {
            t = t.substring(1, t.length() - 1);
        }
        while (t.endsWith(".")) {
            t = t.substring(0, t.length() - 1);
        }
        return t;
    }
}
