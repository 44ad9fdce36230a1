//! Cron schedules for `triggers.crons`: five fields, evaluated in UTC, as on
//! Workers. Parsing and evaluation are croner's; this module fixes the dialect.

use jiff::Timestamp;

#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    /// Five fields (minute hour day-of-month month day-of-week); no seconds.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(expr.trim())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            expr: expr.to_string(),
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(jiff::tz::TimeZone::UTC);
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_in_utc() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        let t: Timestamp = "2026-11-25T10:07:30Z".parse().unwrap();
        assert_eq!(s.next_after(t).unwrap().to_string(), "2026-11-25T10:15:00Z");
        let s = Schedule::parse("0 3 * * MON").unwrap();
        assert_eq!(s.next_after(t).unwrap().to_string(), "2026-11-30T03:00:00Z");
        assert!(Schedule::parse("* * * *").is_err());
        assert!(
            Schedule::parse("0 * * * * *").is_err(),
            "seconds are not allowed"
        );
        assert!(Schedule::parse("61 * * * *").is_err());
    }
}
