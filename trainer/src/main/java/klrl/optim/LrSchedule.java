package klrl.optim;

/** Linear warm-up from 0, then constant or cosine decay to min_lr_ratio·lr at the last step. */
public record LrSchedule(double lr, int warmup, String kind, double minRatio, int total) {
    public double at(int step) {
        if (step < warmup) {
            return lr * (step + 1) / warmup;
        }
        if (kind.equals("constant") || total <= warmup) {
            return lr;
        }
        double progress = Math.min(1.0, (double) (step - warmup) / Math.max(1, total - warmup));
        return lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
}
