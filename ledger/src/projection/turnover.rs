//! The annual technology-contract turnover (技术合同成交额): running figures per year and
//! breakdown cell, fed by turnover lines.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::lines::{TurnoverCell, TurnoverFigures, TurnoverLine};

#[derive(Debug, Clone, Default)]
pub(super) struct Turnover {
    cells: BTreeMap<(i32, &'static str, Cow<'static, str>), TurnoverFigures>,
}

impl Turnover {
    /// Adds a line to its six cells; returns their new figures.
    pub(super) fn add(&mut self, line: &TurnoverLine) -> Vec<TurnoverCell> {
        let year = line.year();
        line.cells()
            .into_iter()
            .map(|(dimension, key)| {
                let cell = (year, dimension, key);
                // Looked up before inserting: the key is copied only for a new cell.
                let figures = match self.cells.get_mut(&cell) {
                    Some(figures) => figures,
                    None => self.cells.entry(cell.clone()).or_default(),
                };
                figures.add(line);
                assert!(figures.contracts >= 0, "a cell never counts fewer than no contracts");
                TurnoverCell { year, dimension, key: cell.2, figures: figures.clone(), position: line.position }
            })
            .collect()
    }

    pub(super) fn cells_of(&self, year: i32) -> Vec<(&'static str, String, TurnoverFigures)> {
        self.cells
            .range((year, "", Cow::Borrowed(""))..)
            .take_while(|((y, _, _), _)| *y == year)
            .map(|((_, d, k), f)| (*d, k.to_string(), f.clone()))
            .collect()
    }
}
