//! Step learning-rate schedule: the base rate multiplied by gamma at each milestone epoch.

/// lr(epoch) = base * gamma^(number of milestones <= epoch), epochs counted from 0. With the paper's
/// CIFAR recipe (0.1, milestones 60/120/160, gamma 0.1): 0.1 for epochs 0-59, 0.01 for 60-119, ...
#[derive(Debug, Clone, PartialEq)]
pub struct StepSchedule {
    pub base: f64,
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl StepSchedule {
    pub fn lr(&self, epoch: usize) -> f64 {
        let drops = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.base * self.gamma.powi(drops as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_recipe_drops_at_each_milestone() {
        let schedule = StepSchedule { base: 0.1, milestones: vec![60, 120, 160], gamma: 0.1 };
        // Hand-computed: 0.1 * 0.1^k after the k-th milestone.
        for (epoch, expected) in [(0, 0.1), (59, 0.1), (60, 0.01), (119, 0.01), (120, 0.001), (160, 0.0001)] {
            assert!((schedule.lr(epoch) - expected).abs() < 1e-15, "epoch {epoch}");
        }
    }
}
